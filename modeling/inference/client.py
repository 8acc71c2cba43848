"""The web process's side of the inference worker: send inputs, get class probabilities back.

Torch-free and Django-free: the web process scores through this client and never loads a model.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .protocol import InferenceFailed, InferenceUnavailable, read_frame, write_frame

# --------------------------------------------------------------------------------------------------
# Client (used by the web process)
# --------------------------------------------------------------------------------------------------


@dataclass
class ScoreResult:
    classes: list[str]
    scores: list[list[float] | None]  # one row per input, None where that input failed
    errors: dict[int, str]  # input index -> why it could not be scored
    batch_inputs: int  # how many inputs the encoder ran together with these (batching across requests)
    # Sequence tagging: per input its spans ({"start", "end", "label", "text"}), None where it failed.
    spans: list[list[dict] | None] | None = None
    # Object detection: per input its boxes ({"xmin", "ymin", "xmax", "ymax", "label", "score"}), None where it failed.
    boxes: list[list[dict] | None] | None = None


class InferenceClient:
    def __init__(self, address: tuple[str, int], *, key: bytes, timeout: float = 60.0) -> None:
        self.address = address
        self.key = key
        self.timeout = timeout

    def _call(self, header: dict, blobs: Sequence[bytes] = ()) -> dict:
        header = {**header, "auth": self.key.hex()}
        try:
            with socket.create_connection(self.address, timeout=self.timeout) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                write_frame(sock, header, blobs)
                answer, _ = read_frame(sock, max_payload=0)
        except TimeoutError:  # socket.timeout is an alias of it
            raise InferenceUnavailable(f"the inference worker did not answer within {self.timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise InferenceUnavailable(
                f"the inference worker is not reachable at {self.address[0]}:{self.address[1]} ({exc})"
            ) from None
        if not answer.get("ok"):
            raise InferenceFailed(answer.get("error") or "the inference worker refused the request")
        return answer

    def score(
        self, *, encoder: str, encoder_version: str, head_path: str | Path, inputs: Sequence[bytes | str],
        finetuned: str | Path | None = None,
    ) -> ScoreResult:
        """Scores for raw inputs: image bytes for image encoders, strings for text encoders. `finetuned`: the
        folder of the project's fine-tuned weights for the encoder, when the version was trained on them."""
        blobs = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in inputs]
        answer = self._call(
            {
                "op": "score",
                "encoder": encoder,
                "encoder_version": encoder_version,
                "head": str(head_path),
                "finetuned": str(finetuned) if finetuned else "",
                "text": bool(inputs) and isinstance(inputs[0], str),
                "sizes": [len(b) for b in blobs],
            },
            blobs,
        )
        return ScoreResult(
            classes=list(answer["classes"]),
            scores=answer["scores"],
            errors={int(k): v for k, v in answer.get("errors", {}).items()},
            batch_inputs=int(answer.get("batch_inputs", len(blobs))),
            spans=answer.get("spans"),
            boxes=answer.get("boxes"),
        )

    def status(self) -> dict:
        return self._call({"op": "status"})
