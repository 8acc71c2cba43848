"""The web process never imports torch, spaCy or scikit-learn: URLconf, every view module, the signal
receivers and real requests stay free of them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import sys
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django.urls import get_resolver
    resolver = get_resolver()
    resolver.url_patterns  # imports every view module the URLconf names
    import lightbulb_site.wsgi, projects.views, projects.api, labeling.views, labeling.api, labeling.stats
    import modeling.views, modeling.api, modeling.services, modeling.hooks, modeling.admin, modeling.serving
    import modeling.inference.client, modeling.receivers, interchange.receivers, interchange.admin
    from django.contrib.auth import get_user_model
    from django.test import Client
    from projects.models import Project, Item, Membership
    from modeling.models import ModelState, ItemPrediction
    user = get_user_model().objects.create_superuser("root", "r@example.com", "pw")
    project = Project.objects.create(slug="p", title="P", data_type="text", classes=["a", "b"],
                                     dataset_directory="/nonexistent")
    items = [Item.objects.create(project=project, key=f"k{i}", kind="text", text=f"t{i}", content_hash=str(i))
             for i in range(3)]
    for i, item in enumerate(items):
        ItemPrediction.objects.create(item=item, project=project, version=1, label="a", confidence=.6,
                                      entropy=.9 - i / 10, scores=[.6, .4])
    ModelState.objects.create(project=project, ranked_version=1)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    for url in ["/projects/", f"/projects/{project.pk}/", f"/projects/{project.pk}/label/",
                f"/projects/{project.pk}/model/card/", f"/api/projects/{project.pk}/model/",
                f"/api/projects/{project.pk}/items/next/?count=2", f"/api/projects/{project.pk}/stats/",
                "/admin/modeling/modelversion/", "/admin/modeling/embeddingjob/", "/admin/projects/project/"]:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    # Scoring is routed to the inference worker: the web side reads inputs and answers without torch.
    assert client.get(f"/projects/{project.pk}/classify/").status_code == 200
    response = client.post(f"/api/projects/{project.pk}/score/", {"type": "text", "texts": ["x"]},
                           content_type="application/json")
    assert response.status_code == 409, response.content
    heavy = ("torch", "torchvision", "sentence_transformers", "spacy", "sklearn")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
    print("HEAVY:" + ",".join(loaded))
    """
)


def test_it_never_imports_torch_spacy_or_sklearn_in_the_web_process(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/web.sqlite3",
        "DJANGO_SETTINGS_MODULE": "lightbulb_site.settings",
        "LIGHTBULB_MODEL_IN_THE_LOOP": "1",
        "LIGHTBULB_Q_SYNC": "0",
        "ALLOWED_HOSTS": "localhost",
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "HEAVY:\n" in done.stdout, done.stdout[-500:]
