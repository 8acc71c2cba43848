from labeling.hotkeys import BATCH_RESERVED_KEYS, class_hotkeys, command_keys


def keys(classes):
    return {c["label"]: c["keys"] for c in class_hotkeys(classes)}


def test_it_numbers_classes_and_adds_unambiguous_first_letters():
    assert keys(["Cat", "Not Cat"]) == {"Cat": ["1", "c"], "Not Cat": ["2", "n"]}
    assert keys(["Dog", "Dolphin", "Giraffe"]) == {"Dog": ["1"], "Dolphin": ["2"], "Giraffe": ["3", "g"]}


def test_single_character_classes_use_their_own_key():
    got = keys([str(d) for d in range(10)])
    assert got == {str(d): [str(d)] for d in range(10)}


def test_classes_claim_their_first_letters_before_skip_and_undo():
    classes = class_hotkeys(["Spam", "Unsure", "Ham"])
    assert {c["label"]: c["keys"] for c in classes} == {"Spam": ["1", "s"], "Unsure": ["2", "u"], "Ham": ["3", "h"]}
    assert command_keys(classes) == {"skip": "k", "undo": "z"}  # s is spam, u is unsure
    assert command_keys(class_hotkeys(["YES", "NO"])) == {"skip": "s", "undo": "u"}
    single = class_hotkeys(["s", "k", "x", "q", "0", "u", "z", "b", "y"])
    assert command_keys(single) == {"skip": "", "undo": ""}  # every letter is a class: arrows only


def test_the_batch_grid_keeps_its_own_keys():
    assert keys(["Spam", "Ham"]) != {c["label"]: c["keys"] for c in
                                     class_hotkeys(["Spam", "Ham"], reserved=BATCH_RESERVED_KEYS)}
    assert {c["label"]: c["keys"] for c in class_hotkeys(["Spam", "Ham"], reserved=BATCH_RESERVED_KEYS)} == {
        "Spam": ["1"], "Ham": ["2", "h"]}


def test_only_the_first_nine_get_digits():
    got = keys([f"class {i}" for i in range(12)])
    assert got["class 8"] == ["9"] and got["class 9"] == [] and got["class 11"] == []
