from labeling.hotkeys import class_hotkeys


def keys(classes):
    return {c["label"]: c["keys"] for c in class_hotkeys(classes)}


def test_it_numbers_classes_and_adds_unambiguous_first_letters():
    assert keys(["Cat", "Not Cat"]) == {"Cat": ["1", "c"], "Not Cat": ["2", "n"]}
    assert keys(["Dog", "Dolphin", "Giraffe"]) == {"Dog": ["1"], "Dolphin": ["2"], "Giraffe": ["3", "g"]}


def test_single_character_classes_use_their_own_key():
    got = keys([str(d) for d in range(10)])
    assert got == {str(d): [str(d)] for d in range(10)}


def test_skip_and_undo_letters_stay_reserved():
    assert keys(["Spam", "Unsure", "Ham"]) == {"Spam": ["1"], "Unsure": ["2"], "Ham": ["3", "h"]}
    assert keys(["YES", "NO"]) == {"YES": ["1", "y"], "NO": ["2", "n"]}


def test_only_the_first_nine_get_digits():
    got = keys([f"class {i}" for i in range(12)])
    assert got["class 8"] == ["9"] and got["class 9"] == [] and got["class 11"] == []
