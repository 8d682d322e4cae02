"""LViT and Ariadne layouts in tmp folders: the triples they load and every malformed case."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers.layouts import TEXT, make_ariadne, make_lvit, make_lvit_shared_sheet, pair
from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.data.imageio import check_pair, load_image, load_mask
from tmc_lightning.data.layouts import (
    DataError,
    SplitAbsent,
    detect_layout,
    read_ariadne,
    read_lvit,
    read_manifest,
)


def test_lvit_qata_and_mosmed_naming(tmp_path):
    qata = read_lvit(make_lvit(tmp_path / "q"), "train")
    assert [s.image.name for s in qata] == ["train0.png", "train1.png", "train2.png"]
    assert qata[0].mask.name == "mask_train0.png" and qata[0].text == TEXT
    mosmed = read_lvit(make_lvit(tmp_path / "m", mosmed=True), "val")
    assert mosmed[0].mask.name == mosmed[0].image.name == "val0.png"


def test_mosmed_semicolon_csv_with_text_column(tmp_path):
    root = make_lvit(tmp_path, mosmed=True)
    (root / "Train_Folder" / "Train_text.xlsx").unlink()
    (root / "Train_Folder" / "Train_text.csv").write_text(
        "Image;text\n" + "".join(f"train{i}.png;{TEXT}\n" for i in range(3))
    )
    assert len(read_lvit(root, "train")) == 3


def test_shared_train_val_sheet(tmp_path):
    root = make_lvit_shared_sheet(tmp_path)
    assert len(read_lvit(root, "train")) == 3 and len(read_lvit(root, "val")) == 3


def test_ariadne_val_is_last_fifth_of_train(tmp_path):
    root = make_ariadne(tmp_path)
    assert detect_layout(root) == "ariadne"
    assert [s.image.name for s in read_ariadne(root, "train")] == [
        "c0.png",
        "c1.png",
        "c2.png",
        "c3.png",
    ]
    assert [s.image.name for s in read_ariadne(root, "val")] == ["c4.png"]


def test_case_insensitive_match_warns_once_with_a_count(tmp_path):
    root = make_lvit(tmp_path)
    img = root / "Train_Folder" / "img"
    (img / "train0.png").rename(img / "TRAIN0.png")
    (img / "train1.png").rename(img / "Train1.PNG")
    with pytest.warns(UserWarning, match="2 file name"):
        samples = read_lvit(root, "train")
    assert samples[0].image.name == "TRAIN0.png"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing_mask", r"Train_text.xlsx row 3: mask mask_train1.png does not exist .*add the"),
        ("missing_text_row", r"1 mask\(s\) in .*labelcol have no text row in .*Train_text.xlsx"),
        ("wrong_columns", r"Train_text.xlsx: text sheet lacks column\(s\) \['Description'\]"),
        ("empty_description", "Train_text.xlsx row 3: empty Description .* write its text"),
        ("empty_split", "split in .*labelcol is empty: .*put the split's masks there"),
        ("missing_image", r"row 4: image .*train2.png for mask .* does not exist; add"),
    ],
)
def test_malformed_lvit_gives_one_clear_error(tmp_path, breakage, message):
    root = make_lvit(tmp_path)
    folder = root / "Train_Folder"
    sheet = folder / "Train_text.xlsx"
    df = pd.read_excel(sheet)
    if breakage == "missing_mask":
        (folder / "labelcol" / "mask_train1.png").unlink()
    elif breakage == "missing_text_row":
        df.iloc[:2].to_excel(sheet, index=False)
    elif breakage == "wrong_columns":
        df.rename(columns={"Description": "Caption"}).to_excel(sheet, index=False)
    elif breakage == "empty_description":
        df.loc[1, "Description"] = ""
        df.to_excel(sheet, index=False)
    elif breakage == "empty_split":
        for p in (folder / "labelcol").iterdir():
            p.unlink()
        df.iloc[:0].to_excel(sheet, index=False)
    elif breakage == "missing_image":
        (folder / "img" / "train2.png").unlink()
    with pytest.raises(DataError, match=message):
        read_lvit(root, "train")


def test_root_that_does_not_exist_names_the_layouts(tmp_path):
    dm = build_datamodule("qata", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="LViT layout.*Ariadne"):
        dm.setup("fit")


def test_corrupt_png_and_size_mismatch(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match="cannot read image .*bad.png"):
        load_image(bad, 16)
    pair(tmp_path / "i", tmp_path / "m", "a.png", "a.png", size=(32, 32))
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "m" / "b.png")
    with pytest.raises(DataError, match="32x32 but its mask .* 30x20"):
        check_pair(tmp_path / "i" / "a.png", tmp_path / "m" / "b.png")


def test_non_ascii_text_loads_and_tokenises(tmp_path, cache_dir):
    root = make_lvit(tmp_path)
    for s in ("Train", "Val"):
        sheet = root / f"{s}_Folder" / f"{s}_text.xlsx"
        df = pd.read_excel(sheet)
        df["Description"] = "Infiltración bilateral, lóbulo inferior izquierdo — 2 áreas."
        df.to_excel(sheet, index=False)
    dm = build_datamodule("qata", root=str(root), image_size=32, batch_size=2, decoded_cache=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["attention_mask"].sum(1).min() > 5 and "Infiltración" in batch["text"][0]


@pytest.mark.parametrize(
    ("values", "dtype"),
    [((0, 1), np.uint8), ((0, 255), np.uint8), ((0, 65535), np.uint16), ((0, 1), np.uint16)],
)
def test_mask_encodings_binarise_alike(tmp_path, values, dtype):
    m = np.full((20, 20), values[0], dtype)
    m[5:15, 5:15] = values[1]
    Image.fromarray(m).save(tmp_path / "m.png")
    out = load_mask(tmp_path / "m.png", 20)
    assert out.sum() == 100 and set(np.unique(out)) == {0, 1}


def test_two_valued_masks_of_any_encoding(tmp_path):
    """0/100 gray, a red RGB mask and a palette (index) mask: the one non-zero value is lesion."""
    m = np.zeros((20, 20), np.uint8)
    m[5:15, 5:15] = 1
    Image.fromarray(m * 100).save(tmp_path / "gray100.png")
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[m.astype(bool)] = (200, 0, 0)  # luminance 60
    Image.fromarray(rgb).save(tmp_path / "red.png")
    pal = Image.fromarray(m, mode="P")
    pal.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # index 1 = dark red
    pal.save(tmp_path / "palette.png")
    for name in ("gray100.png", "red.png", "palette.png"):
        out = load_mask(tmp_path / name, 20)
        assert out.sum() == 100 and set(np.unique(out)) == {0, 1}, name


@pytest.mark.parametrize("kind", ["gray8", "rgb", "rgba", "gray16"])
def test_image_encodings_load_as_gray_at_the_model_size(tmp_path, kind):
    ramp = np.tile(np.linspace(0, 1, 40), (30, 1))  # 40 wide, 30 high
    if kind == "gray16":
        arr, mode = (ramp * 65535).astype(np.uint16), None
    else:
        arr = (ramp * 255).astype(np.uint8)
        arr, mode = {
            "gray8": (arr, None),
            "rgb": (np.stack([arr] * 3, -1), None),
            "rgba": (np.dstack([arr] * 3 + [np.full_like(arr, 255)]), None),
        }[kind]
    Image.fromarray(arr, mode).save(tmp_path / "x.png")
    out = load_image(tmp_path / "x.png", 16)
    assert out.shape == (16, 16) and out.dtype == np.uint8
    assert out[:, 0].max() < 20 and out[:, -1].min() > 235  # the ramp survives every encoding


def test_masks_resize_with_nearest_neighbour(tmp_path):
    m = np.zeros((40, 40), np.uint8)
    m[:, 20:] = 255  # right half
    m[0, 0] = 255  # one isolated pixel
    Image.fromarray(m).save(tmp_path / "m.png")
    out = load_mask(tmp_path / "m.png", 10)
    assert set(np.unique(out)) == {0, 1}  # no interpolated grey levels
    assert out[:, 5:].all() and not out[:, 1:5].any()


def test_jpeg_noisy_masks(tmp_path):
    m = np.zeros((40, 40), np.uint8)
    m[10:30, 10:30] = 255
    Image.fromarray(m).save(tmp_path / "m.jpg", quality=60)
    out = load_mask(tmp_path / "m.jpg", 40)
    assert abs(int(out.sum()) - 400) < 40
    Image.fromarray(np.zeros((40, 40), np.uint8) + 3).save(tmp_path / "empty.jpg", quality=60)
    assert load_mask(tmp_path / "empty.jpg", 40).sum() == 0  # faint noise is not a lesion


def test_decoded_cache_is_reused_and_invalidated(tmp_path, cache_dir):
    root = make_lvit(tmp_path / "d")
    dm = build_datamodule("qata", root=str(root), image_size=16, batch_size=2)
    dm.setup("fit")
    cached = sorted((cache_dir / "decoded").glob("*.npy"))
    assert cached
    again = build_datamodule("qata", root=str(root), image_size=16, batch_size=2)
    again.setup("fit")
    assert sorted((cache_dir / "decoded").glob("*.npy")) == cached  # reused, nothing new
    img = np.zeros((32, 32), np.uint8)
    Image.fromarray(img).save(root / "Train_Folder" / "img" / "train0.png")  # edit a file
    third = build_datamodule("qata", root=str(root), image_size=16, batch_size=2)
    third.setup("fit")
    assert len(list((cache_dir / "decoded").glob("*.npy"))) > len(cached)
    assert third.datasets["train"].images[0].max() == 0


def test_shared_sheet_still_reports_a_mask_missing_from_both_folders(tmp_path):
    root = make_lvit_shared_sheet(tmp_path)
    (root / "Val_Folder" / "labelcol" / "mask_val1.png").unlink()
    for split in ("train", "val"):  # the lost mask is reported from either side
        with pytest.raises(DataError, match=r"Train_Val_text.xlsx row 6: mask mask_val1.png"):
            read_lvit(root, split)


@pytest.mark.parametrize(
    ("breakage", "split", "message"),
    [
        ("missing_mask", "val", r"train.csv row 6: mask mask_c4.png does not exist"),
        ("missing_mask_train", "train", r"train.csv row 2: mask mask_c0.png does not exist"),
        ("mask_without_row", "train", r"1 mask\(s\) in .*GTs have no text row in .*train.csv"),
        ("mask_without_row", "val", r"\['mask_extra.png'\]"),
        ("wrong_columns", "train", r"train.csv: text sheet lacks column\(s\) \['Description'\]"),
        ("empty_description", "train", "train.csv row 3: empty Description"),
        ("missing_image", "train", r"row 4: image .*c2.png for mask mask_c2.png does not exist"),
        ("empty_split", "train", "split in .*GTs is empty"),
        ("no_prompt_sheet", "train", r"missing prompt sheet .*train.csv .*add it"),
    ],
)
def test_malformed_ariadne_gives_one_clear_error(tmp_path, breakage, split, message):
    root = make_ariadne(tmp_path / "a")
    sheet = root / "prompt" / "train.csv"
    df = pd.read_csv(sheet)
    gts = root / "Train" / "GTs"
    if breakage == "missing_mask":
        (gts / "mask_c4.png").unlink()
    elif breakage == "missing_mask_train":
        (gts / "mask_c0.png").unlink()
    elif breakage == "mask_without_row":
        pair(root / "Train" / "Images", gts, "extra.png", "mask_extra.png")
    elif breakage == "wrong_columns":
        df.rename(columns={"Description": "Prompt"}).to_csv(sheet, index=False)
    elif breakage == "empty_description":
        df.loc[1, "Description"] = ""
        df.to_csv(sheet, index=False)
    elif breakage == "missing_image":
        (root / "Train" / "Images" / "c2.png").unlink()
    elif breakage == "empty_split":
        for p in gts.iterdir():
            p.unlink()
        df.iloc[:0].to_csv(sheet, index=False)
    elif breakage == "no_prompt_sheet":
        sheet.unlink()
    with pytest.raises(DataError, match=message):
        read_ariadne(root, split)


def test_ariadne_folders_val_sheet_and_test_split(tmp_path):
    root = make_ariadne(tmp_path / "a")
    (root / "Train" / "GTs").rename(root / "Train" / "Ground-truths")
    assert len(read_ariadne(root, "train")) == 4  # the other published mask folder name
    with pytest.raises(SplitAbsent, match="test.csv"):
        read_ariadne(root, "test")  # no Test folder, no test.csv: absent, not broken
    rows = []
    for split, stem in (("val", "Val"), ("test", "Test")):
        pair(root / stem / "Images", root / stem / "GTs", f"{split}.png", f"mask_{split}.png")
        rows = [{"Image": f"mask_{split}.png", "Description": TEXT}]
        pd.DataFrame(rows).to_csv(root / "prompt" / f"{split}.csv", index=False)
    assert len(read_ariadne(root, "train")) == 5  # with val.csv, train.csv is all train
    assert [s.image.name for s in read_ariadne(root, "val")] == ["val.png"]
    assert [s.image.name for s in read_ariadne(root, "test")] == ["test.png"]
    (root / "prompt" / "test.csv").unlink()  # a Test folder without its sheet is broken
    with pytest.raises(DataError, match="missing prompt sheet") as err:
        read_ariadne(root, "test")
    assert not isinstance(err.value, SplitAbsent)


def test_ariadne_root_that_does_not_exist(tmp_path):
    with pytest.raises(DataError, match=r"nowhere does not exist \(expected Ariadne's layout"):
        read_ariadne(tmp_path / "nowhere", "train")


def test_unreadable_sheets_name_the_file_and_the_fix(tmp_path):
    root = make_lvit(tmp_path / "l")
    sheet = root / "Train_Folder" / "Train_text.xlsx"
    sheet.unlink()
    csv = root / "Train_Folder" / "Train_text.csv"
    csv.write_bytes(
        b"Image,Description\n"
        + "".join(f"mask_train{i}.png,Infiltración basal\n" for i in range(3)).encode("cp1252")
    )
    with pytest.raises(DataError, match=r"Train_text.csv: the text sheet is not UTF-8 .*CSV UTF-8"):
        read_lvit(root, "train")
    csv.unlink()
    sheet.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(DataError, match=r"Train_text.xlsx: cannot read the text sheet .*re-save"):
        read_lvit(root, "train")
    manifest = tmp_path / "manifest.xlsx"
    manifest.write_text("image,mask,text,split\n")
    with pytest.raises(DataError, match=r"manifest.xlsx: cannot read the manifest"):
        read_manifest(manifest, "train")


def test_excel_csv_utf8_with_bom_reads(tmp_path):
    root = make_lvit(tmp_path)
    (root / "Train_Folder" / "Train_text.xlsx").unlink()
    (root / "Train_Folder" / "Train_text.csv").write_bytes(
        b"\xef\xbb\xbf"
        + b"Image,Description\n"
        + "".join(f"mask_train{i}.png,Infiltración basal\n" for i in range(3)).encode()
    )
    samples = read_lvit(root, "train")
    assert len(samples) == 3 and samples[0].text == "Infiltración basal"


def test_broken_test_split_is_an_error_not_an_absent_split(tmp_path):
    root = make_lvit(tmp_path)
    dm = build_datamodule("qata", root=str(root))
    assert dm.has_split("test") is False  # no Test_Folder: the QaTa release's case
    pair(root / "Test_Folder" / "img", root / "Test_Folder" / "labelcol", "t.png", "mask_t.png")
    pd.DataFrame([{"Image": "mask_t.png", "Caption": TEXT}]).to_excel(
        root / "Test_Folder" / "Test_text.xlsx", index=False
    )
    with pytest.raises(DataError, match=r"Test_text.xlsx: text sheet lacks column"):
        dm.has_split("test")


def _reencode(path, suffix):
    """Save ``path``'s image under another extension (and format) and delete the original."""
    target = path.with_suffix(suffix)
    Image.open(path).save(target)
    path.unlink()
    return target


def test_images_are_matched_by_stem_when_the_sheet_says_png(tmp_path):
    root = make_lvit(tmp_path / "q")
    img = root / "Train_Folder" / "img"
    _reencode(img / "train0.png", ".tif")
    _reencode(img / "train1.png", ".JPG")
    with pytest.warns(UserWarning, match=r"2 image\(s\) found under another extension") as rec:
        samples = read_lvit(root, "train")
    assert [s.image.name for s in samples] == ["train0.tif", "train1.JPG", "train2.png"]
    assert len([w for w in rec if "another extension" in str(w.message)]) == 1  # one warning
    assert samples[0].mask.name == "mask_train0.png"  # masks still match exactly


def test_two_images_with_the_same_stem_are_an_error_naming_both(tmp_path):
    root = make_lvit(tmp_path / "q")
    img = root / "Train_Folder" / "img"
    Image.open(img / "train0.png").save(img / "train0.tif")
    Image.open(img / "train0.png").save(img / "train0.jpg")
    (img / "train0.png").unlink()
    with pytest.raises(DataError, match=r"train0\.jpg, train0\.tif"):
        read_lvit(root, "train")


def test_stem_matching_in_the_ariadne_layout_and_manifests(tmp_path):
    from tmc_lightning.data.layouts import read_ariadne, read_manifest

    root = make_ariadne(tmp_path / "a")
    _reencode(root / "Train" / "Images" / "c1.png", ".bmp")
    with pytest.warns(UserWarning, match="another extension"):
        names = [s.image.name for s in read_ariadne(root, "train")]
    assert "c1.bmp" in names
    sheet = tmp_path / "a" / "manifest.csv"
    sheet.write_text(
        f'image,mask,text,split\nTrain/Images/c1.png,Train/GTs/mask_c1.png,"{TEXT}",train\n'
    )
    with pytest.warns(UserWarning, match="another extension"):
        (sample,) = read_manifest(sheet, "train")
    assert sample.image.name == "c1.bmp"


def test_data_check_reports_stem_matches(tmp_path, capsys):
    from tmc_lightning.data.inspect import report

    root = make_lvit(tmp_path / "q")
    _reencode(root / "Val_Folder" / "img" / "val2.png", ".tiff")
    assert report(build_datamodule("qata", root=str(root))) == 0
    out = capsys.readouterr().out
    assert "note: " in out and "val2.png -> val2.tiff" in out
