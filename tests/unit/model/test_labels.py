"""Label files: the formats parse_labels() understands, read_labels() errors, fit_labels() rules."""

from __future__ import annotations

import logging

import pytest

from edged.errors import ModelError
from edged.model.labels import fit_labels, parse_labels, read_labels
from tests.conftest import shared_or_skip

# --- parse_labels ----------------------------------------------------------------------------


def test_plain_lines():
    assert parse_labels(["cat\n", "dog\n", "bird\n"]) == ["cat", "dog", "bird"]


def test_plain_lines_are_stripped_and_keep_inner_spaces():
    assert parse_labels(["  tabby, tabby cat \n", "military uniform\n"]) == [
        "tabby, tabby cat", "military uniform"]


@pytest.mark.parametrize(
    "lines",
    [
        ["0 cat\n", "1 dog\n", "2 bird\n"],
        ["0: cat\n", "1: dog\n", "2: bird\n"],
        ["0:cat\n", "1 :dog\n", "2  :  bird\n"],
        ["0,cat\n", "1, dog\n", "2 ,bird\n"],
        ["0\tcat\n", "1\tdog\n", "2\tbird\n"],
    ],
    ids=["space", "colon", "colon-spacing", "comma", "tab"],
)
def test_prefixed_forms(lines):
    assert parse_labels(lines) == ["cat", "dog", "bird"]


def test_prefixed_label_keeps_spaces_and_commas_inside():
    assert parse_labels(["0 tabby, tabby cat\n", "1: great white shark \n"]) == [
        "tabby, tabby cat", "great white shark"]


def test_prefixed_out_of_order_is_put_in_index_order():
    assert parse_labels(["2 bird\n", "0 cat\n", "1 dog\n"]) == ["cat", "dog", "bird"]


def test_prefixed_gap_is_named_by_index():
    assert parse_labels(["0 cat\n", "2 bird\n"]) == ["cat", "1", "bird"]


def test_mixed_prefixed_and_plain_is_plain():
    lines = ["0 cat\n", "dog\n", "2 bird\n"]
    assert parse_labels(lines) == ["0 cat", "dog", "2 bird"]


def test_numeric_labels_without_separator_are_plain():
    # A digits-only file (e.g. MNIST classes) has no index prefix: each line is the label.
    assert parse_labels(["0\n", "1\n", "2\n"]) == ["0", "1", "2"]
    assert parse_labels(["3d printer\n", "4wd\n"]) == ["3d printer", "4wd"]


@pytest.mark.parametrize("tail", [["\n"], ["\n", "\n"], ["   \n", "\t\n"], [""]])
def test_trailing_blank_lines_dropped(tail):
    assert parse_labels(["cat\n", "dog\n", *tail]) == ["cat", "dog"]
    assert parse_labels(["0 cat\n", "1 dog\n", *tail]) == ["cat", "dog"]


def test_inner_blank_line_is_kept_as_a_label():
    # A blank line in the middle still holds an index; dropping it would shift every class.
    assert parse_labels(["cat\n", "\n", "dog\n"]) == ["cat", "", "dog"]


def test_crlf_lines():
    assert parse_labels(["cat\r\n", "dog\r\n", "\r\n"]) == ["cat", "dog"]
    assert parse_labels(["0 cat\r\n", "1: dog\r\n"]) == ["cat", "dog"]


def test_no_final_newline():
    assert parse_labels(["cat\n", "dog"]) == ["cat", "dog"]


def test_empty():
    assert parse_labels([]) == []
    assert parse_labels(["\n", "\n"]) == []


def test_duplicate_index_raises():
    with pytest.raises(ValueError, match="twice"):
        parse_labels(["0 cat\n", "1 dog\n", "0 bird\n"])


# --- read_labels -----------------------------------------------------------------------------


def test_read_labels_file(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_bytes(b"0 cat\r\n1 dog\r\n\r\n")
    assert read_labels(str(p)) == ["cat", "dog"]


def test_read_labels_utf8(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_text("caf\u00e9\nna\u00efve\n", encoding="utf-8")
    assert read_labels(str(p)) == ["caf\u00e9", "na\u00efve"]


def test_read_labels_duplicate_index_is_model_error(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_text("0 cat\n1 dog\n1 bird\n")
    with pytest.raises(ModelError) as info:
        read_labels(str(p))
    msg = str(info.value)
    assert msg.startswith(f"{p}: bad labels file")
    assert "twice" in msg
    assert "\n" not in msg


def test_read_labels_missing_file(tmp_path):
    p = tmp_path / "nope.txt"
    with pytest.raises(ModelError) as info:
        read_labels(str(p))
    assert str(info.value) == f"{p}: cannot read labels: No such file or directory"


def test_read_labels_directory(tmp_path):
    with pytest.raises(ModelError, match="cannot read labels"):
        read_labels(str(tmp_path))


def test_read_labels_not_utf8(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_bytes("caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ModelError) as info:
        read_labels(str(p))
    assert str(info.value) == f"{p}: labels file is not UTF-8 text"


def test_read_labels_binary_file(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ModelError, match="not UTF-8"):
        read_labels(str(p))


def test_read_labels_utf8_bom(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_bytes(b"\xef\xbb\xbf0 cat\n1 dog\n")
    assert read_labels(str(p)) == ["cat", "dog"]


def test_read_real_label_files():
    models = shared_or_skip()
    imagenet = read_labels(str(models / "imagenet" / "imagenet_labels.txt"))
    assert len(imagenet) == 1001 and imagenet[0] == "background"
    assert imagenet[89] == "macaw" and imagenet[653] == "military uniform"
    assert read_labels(str(models / "vww" / "vww_labels.txt")) == ["notperson", "person"]
    cifar = read_labels(str(models / "cifar10" / "cifar10_labels.txt"))
    assert len(cifar) == 10 and cifar[1] == "automobile" and cifar[3] == "cat"


# --- fit_labels ------------------------------------------------------------------------------


def test_fit_equal_count_unchanged():
    labels = ["a", "b", "c"]
    assert fit_labels(labels, 3, "l.txt") == ["a", "b", "c"]


def test_fit_one_fewer_prepends_background(caplog):
    with caplog.at_level(logging.INFO, logger="edged.model.labels"):
        got = fit_labels(["a", "b", "c"], 4, "l.txt")
    assert got == ["background", "a", "b", "c"]
    assert "l.txt" in caplog.text


@pytest.mark.parametrize("first", ["background", "Background", " BACKGROUND "])
def test_fit_one_more_drops_leading_background(first):
    assert fit_labels([first, "a", "b"], 2, "l.txt") == ["a", "b"]


def test_fit_one_more_without_background_is_error():
    with pytest.raises(ModelError) as info:
        fit_labels(["a", "b", "c"], 2, "l.txt")
    assert str(info.value) == "l.txt: 3 labels but the model has 2 output classes"


def test_fit_one_more_with_background_not_first_is_error():
    with pytest.raises(ModelError):
        fit_labels(["a", "background", "b"], 2, "l.txt")


@pytest.mark.parametrize(("count", "classes"), [(5, 2), (0, 2), (10, 1001), (998, 1000),
                                                (1, 3), (2, 10)])
def test_fit_other_counts_error_names_file_and_counts(count, classes):
    labels = [f"l{i}" for i in range(count)]
    with pytest.raises(ModelError) as info:
        fit_labels(labels, classes, "/some/labels.txt")
    msg = str(info.value)
    assert msg.startswith("/some/labels.txt: ")
    assert f"{count} labels" in msg and f"{classes} output classes" in msg


def test_fit_imagenet_1000_lines_to_1001_classes():
    labels = [f"class{i}" for i in range(1000)]
    got = fit_labels(labels, 1001, "imagenet.txt")
    assert len(got) == 1001 and got[0] == "background" and got[1] == "class0"
