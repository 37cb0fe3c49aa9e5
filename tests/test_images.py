"""Images as items: decoding with bounds, class trees, the siamese CNN trained by `twin train
--encoder cnn`, `twin eval-oneshot`, image corpora in build/add/query/dedup/groups, and the image
routes of `twin serve`. Real parts: a CNN trained here on synthetic glyphs, FAISS, SQLite, uvicorn."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from retrieval.errors import InputError
from retrieval.images import ImageProblem, class_tree, decode_image, read_images

from .glyphs import class_tree as make_tree
from .test_cli import twin
from .test_http import running


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (its IHDR is valid; its data is not there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def one_line(result, *needles: str) -> str:
    assert result.exit_code != 0
    err = result.output.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and "internal error" not in err[0], result.output
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


# -- decoding ------------------------------------------------------------------------------------
def test_decoding_reads_grey_and_colour_and_refuses_what_is_not_an_image(tmp_path):
    grey = decode_image(png_bytes(Image.new("L", (7, 5), 200)), "g.png")
    assert grey.shape == (5, 7) and grey.dtype == np.uint8 and int(grey[0, 0]) == 200
    colour = decode_image(png_bytes(Image.new("RGB", (4, 3), (255, 0, 0)), "JPEG"), "c.jpg")
    assert colour.shape == (3, 4, 3)
    whole = png_bytes(Image.effect_noise((64, 64), 40).convert("L"))
    cases = {b"": "is empty", b"hello, I am text": "not an image", whole[: len(whole) // 2]: "damaged image"}
    for data, needle in cases.items():
        with pytest.raises(ImageProblem, match=needle) as caught:
            decode_image(data, "x.png")
        assert not caught.value.too_large and str(caught.value).startswith("x.png: ")
    with pytest.raises(ImageProblem, match="20000 x 20000") as caught:
        decode_image(png_header(20_000, 20_000), "huge.png")
    assert caught.value.too_large


def test_a_class_tree_reads_alike_from_a_folder_and_a_zip_and_names_stray_images(tmp_path):
    tree = make_tree(tmp_path / "tree", groups=2, classes=3, drawers=2)
    archive = tmp_path / "tree.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(tree.rglob("*.png")):
            z.write(path, f"top/{path.relative_to(tree).as_posix()}")
    from_folder, from_zip = class_tree(tree), class_tree(archive)
    assert len(from_folder) == len(from_zip) == 12
    assert [f"top/{f.label}" for f in from_folder] == [f.label for f in from_zip]
    assert {f.group for f in from_folder} == {f.group for f in from_zip} == {"group0", "group1"}
    assert len({f.label for f in from_zip}) == 6
    (tree / "stray.png").write_bytes((tree / "group0/char00/00.png").read_bytes())
    with pytest.raises(InputError, match="outside any class folder"):
        class_tree(tree)


# -- the model ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def glyphs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("glyphs")
    return {"train": make_tree(root / "train", groups=2, classes=8, drawers=6, seed=1),
            "dev": make_tree(root / "dev", groups=1, classes=6, drawers=6, seed=2),
            "test": make_tree(root / "test", groups=1, classes=6, drawers=6, seed=3)}


@pytest.fixture(scope="module")
def cnn(glyphs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "cnn"
    result = twin("train", glyphs["train"], "--encoder", "cnn", "--out", out, "--dev", glyphs["dev"],
                  "--epochs", "6", "--image-size", "16")
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_calibrated_cnn_folder_that_loads_everywhere(cnn):
    from retrieval.encoders import load_encoder

    config = json.loads((cnn / "twin_cnn.json").read_text())
    assert config["kind"] == "twin-cnn" and config["image_size"] == 16
    summary = json.loads((cnn / "twin_training.json").read_text())
    assert summary["best_dev_accuracy"] == max(e["dev_accuracy"] for e in summary["epochs"])
    encoder = load_encoder(cnn)
    assert encoder.modality == "image" and encoder.tau == summary["calibration"]["tau"]
    vectors = encoder.encode([np.zeros((40, 30), np.uint8), np.full((16, 16, 3), 255, np.uint8)])
    assert vectors.shape == (2, encoder.dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_the_same_seed_trains_the_same_model_and_composed_classes_change_it(glyphs, tmp_path):
    import torch

    weights = []
    for name, extra in (("a", []), ("b", []), ("c", ["--composed-classes", "0.5"]), ("d", ["--cnn-width", "16"])):
        result = twin("train", glyphs["dev"], "--encoder", "cnn", "--out", tmp_path / name, "--epochs", "2",
                      "--image-size", "16", "--seed", "3", *extra)
        assert result.exit_code == 0, result.output
        weights.append(torch.load(tmp_path / name / "model.pt", weights_only=True))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert json.loads((tmp_path / "c" / "twin_training.json").read_text())["config"]["composed"] == 0.5
    assert weights[0]["features.0.weight"].shape[0] == 64 and weights[3]["features.0.weight"].shape[0] == 16
    assert json.loads((tmp_path / "d" / "twin_cnn.json").read_text())["width"] == 16


def test_eval_oneshot_beats_chance_on_classes_never_trained_on_and_reads_official_runs(cnn, glyphs, tmp_path):
    result = twin("eval-oneshot", glyphs["test"], "--model", cnn, "--ways", "5", "--episodes", "100", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert set(got) == {"accuracy", "ways", "shots", "episodes", "ci95"}
    assert (got["ways"], got["shots"], got["episodes"]) == (5, 1, 100)
    assert got["accuracy"] > 0.6 and 0 <= got["ci95"] < 0.2  # chance is 0.2
    runs = tmp_path / "runs"
    for r in (1, 2):
        run = runs / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        lines = []
        for c in range(6):
            char = glyphs["test"] / "group0" / f"char{c:02d}"
            shutil.copy(char / f"{r:02d}.png", run / "training" / f"class{c + 1:02d}.png")
            shutil.copy(char / f"{r + 2:02d}.png", run / "test" / f"item{6 - c:02d}.png")
            prefix = f"run{r:02d}/" if r == 1 else ""  # relative to the runs folder, or to the run
            lines.append(f"{prefix}test/item{6 - c:02d}.png {prefix}training/class{c + 1:02d}.png")
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
    official = json.loads(twin("eval-oneshot", runs, "--model", cnn, "--json").output)
    assert (official["ways"], official["episodes"]) == (6, 2) and official["accuracy"] > 0.5
    one_line(twin("eval-oneshot", glyphs["test"], "--model", cnn, "--ways", "7"), "no group holds 7 classes")
    (runs / "run02" / "class_labels.txt").write_text("test/item01.png training/nothing.png\n")
    one_line(twin("eval-oneshot", runs, "--model", cnn), "class_labels.txt:1", "two images")


# -- image corpora ----------------------------------------------------------------------------------
def test_build_query_add_over_a_folder_a_zip_and_a_table_of_paths(cnn, glyphs, tmp_path):
    refs = tmp_path / "refs"
    for char in sorted((glyphs["test"] / "group0").iterdir()):
        (refs / char.name).mkdir(parents=True)
        shutil.copy(char / "00.png", refs / char.name / "00.png")
    index = tmp_path / "ix"
    built = twin("build", refs, "--index", index, "--model", cnn)
    assert built.exit_code == 0, built.output
    query = glyphs["test"] / "group0" / "char03" / "00.png"
    got = json.loads(twin("query", "--index", index, "--json", "-k", "2", query).output)
    assert got["query"] == str(query)
    assert got["matches"][0]["id"] == "char03/00.png" and got["matches"][0]["score"] > 0.999
    assert got["matches"][0]["duplicate"] and got["matches"][0]["text"] == str(refs / "char03" / "00.png")
    one_line(twin("query", "--index", index, "what is this?"), "what is this?", "no such file", "holds images")
    # a zip: ids are the paths inside it
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(glyphs["test"] / "group0" / "char01" / "03.png", "extra/one.png")
    added = twin("add", archive, "--index", index)
    assert added.exit_code == 0, added.output
    again = json.loads(twin("query", "--index", index, "--json", "-k", "1",
                            glyphs["test"] / "group0" / "char01" / "03.png").output)
    assert again["matches"][0]["id"] == "extra/one.png"
    # a CSV of paths relative to it, with ids and a payload
    table = tmp_path / "list.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path", "label"])
        writer.writerow(["q1", "refs/char00/00.png", "zero"])
    from_table = tmp_path / "ix2"
    assert twin("build", table, "--index", from_table, "--model", cnn).exit_code == 0
    hit = json.loads(twin("query", "--index", from_table, "--json", "-k", "1", refs / "char00" / "00.png").output)
    assert hit["matches"][0]["id"] == "q1" and hit["matches"][0]["payload"] == {"label": "zero"}
    with open(table, "a", newline="") as f:
        csv.writer(f).writerow(["q2", "refs/nope.png", "x"])
    one_line(twin("build", table, "--index", tmp_path / "ix3", "--model", cnn), "list.csv:3:2", "refs/nope.png")
    (tmp_path / "refs" / "nope.png").write_bytes(b"GIF89a, then nothing")
    one_line(twin("build", table, "--index", tmp_path / "ix3", "--model", cnn), "list.csv:3:2: refs/nope.png: ")


def test_a_bad_image_anywhere_in_the_corpus_is_one_line_and_nothing_is_written(cnn, glyphs, tmp_path):
    good = (glyphs["test"] / "group0" / "char00" / "00.png").read_bytes()
    for name, bad in {"zero.png": b"", "text.png": b"just some text", "cut.png": good[: len(good) // 2],
                      "huge.png": png_header(20_000, 20_000)}.items():
        archive = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("a/ok1.png", good)
            z.writestr(f"a/{name}", bad)
            z.writestr("a/ok2.png", good)
        index = tmp_path / f"ix-{name}"
        one_line(twin("build", archive, "--index", index, "--model", cnn), f"{archive}:a/{name}")
        assert not index.exists() or not any(index.iterdir())
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "fine.png").write_bytes(good)
    (folder / "bad.png").write_bytes(b"\x89PNG not really")
    one_line(twin("build", folder, "--index", tmp_path / "ixf", "--model", cnn), str(folder / "bad.png"))
    one_line(twin("build", folder, "--index", tmp_path / "ixt"), "a folder", "image model")
    one_line(twin("build", tmp_path / "zero.png.zip", "--index", tmp_path / "ixt"), "a zip", "image model")


def test_groups_and_dedup_find_copies_among_images(cnn, glyphs, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(glyphs["test"] / "group0", corpus)
    shutil.copy(corpus / "char02" / "01.png", corpus / "char02" / "copy.png")
    out = tmp_path / "groups.csv"
    result = twin("groups", corpus, "--model", cnn, "-o", out, "--threshold", "0.999")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out)))
    grouped = {r["id"] for r in rows if r["group"]}
    assert {"char02/01.png", "char02/copy.png"} <= grouped
    assert [r["keep"] for r in rows if r["id"] == "char02/copy.png"] == ["false"]
    index = tmp_path / "ix"
    assert twin("build", glyphs["test"], "--index", index, "--model", cnn).exit_code == 0
    deduped = tmp_path / "dedup.csv"
    assert twin("dedup", corpus, "--index", index, "-o", deduped).exit_code == 0
    found = {r["id"]: r for r in csv.DictReader(open(deduped))}
    assert found["char02/copy.png"]["match_id"] == "group0/char02/01.png"
    assert found["char02/copy.png"]["duplicate"] == "true"


# -- HTTP -------------------------------------------------------------------------------------------
def test_an_image_index_is_searched_and_written_over_http_as_base64_and_uploads(cnn, glyphs, tmp_path):
    index = tmp_path / "ix"
    assert twin("build", glyphs["test"], "--index", index, "--model", cnn).exit_code == 0
    probe = (glyphs["test"] / "group0" / "char04" / "02.png").read_bytes()
    b64 = base64.b64encode(probe).decode()
    with running(index) as base, httpx.Client(base_url=base) as http:
        got = http.post("/search", json={"images": [b64, f"data:image/png;base64,{b64}"], "k": 1}).json()
        assert [r["matches"][0]["id"] for r in got["results"]] == ["group0/char04/02.png"] * 2
        upload = http.post("/search", files=[("files", ("probe.png", probe, "image/png"))], data={"k": "1"})
        assert upload.status_code == 200, upload.text
        assert upload.json()["results"][0]["query"] == "probe.png"
        assert upload.json()["results"][0]["matches"][0]["id"] == "group0/char04/02.png"
        new = png_bytes(Image.new("L", (20, 20), 255))
        added = http.post("/items", json={"items": [{"id": "blank", "image": base64.b64encode(new).decode(),
                                                     "payload": {"k": 1}}]})
        assert added.status_code == 200 and added.json()["ids"] == ["blank"]
        assert http.get("/items/blank").json() == {"id": "blank", "text": "blank", "payload": {"k": 1}}
        uploaded = http.post("/items", files=[("files", ("u.png", new, "image/png"))], data={"ids": "up-1"})
        assert uploaded.status_code == 200 and uploaded.json()["ids"] == ["up-1"], uploaded.text
        before = http.get("/stats").json()["count"]
        for body, status, needle in [
            ({"texts": ["hello"]}, 422, "holds images"),
            ({"images": ["!!not base64!!"]}, 422, "not base64"),
            ({"images": [base64.b64encode(b"plain text").decode()]}, 422, "not an image"),
            ({"images": [base64.b64encode(png_header(20_000, 20_000)).decode()]}, 413, "pixels"),
        ]:
            answer = http.post("/search", json=body)
            assert answer.status_code == status and needle in json.dumps(answer.json()["detail"]), answer.text
        bad_batch = {"items": [{"id": "fine", "image": b64}, {"id": "broken", "image": base64.b64encode(
            probe[:40]).decode()}]}
        refused = http.post("/items", json=bad_batch)
        assert refused.status_code == 422 and "broken" in refused.json()["detail"]
        assert http.get("/stats").json()["count"] == before and http.get("/items/fine").status_code == 404
        assert http.get("/search", params={"q": "text"}).status_code == 422

        # A verdict on an image query: scored by the server as the search scored it.
        hit = http.post("/search", json={"images": [b64], "k": 2}).json()["results"][0]["matches"][1]
        verdict = http.post("/feedback", json={"query_image": b64, "query_name": "probe.png", "id": hit["id"],
                                               "duplicate": False}).json()
        assert verdict["score"] == pytest.approx(hit["score"], abs=1e-5) and verdict["a_text"] == "probe.png"
        broken = http.post("/feedback", json={"query_image": base64.b64encode(b"no image").decode(), "id": hit["id"],
                                              "duplicate": True})
        assert broken.status_code == 422 and "not an image" in broken.json()["detail"]
        assert http.post("/feedback", json={"query": "a text", "id": hit["id"], "duplicate": True}).status_code == 422
        assert http.get("/feedback").json()["counts"] == {"duplicate": 0, "not_duplicate": 1}
        known = http.get("/feedback", params={"query": "probe.png"}).json()["verdicts"]
        assert [v["b_id"] for v in known] == [hit["id"]]


def test_the_review_page_searches_an_image_index_by_upload(cnn, glyphs, tmp_path, browser):
    index = tmp_path / "ix"
    assert twin("build", glyphs["test"], "--index", index, "--model", cnn).exit_code == 0
    probe = glyphs["test"] / "group0" / "char04" / "02.png"
    with running(index) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(base)
        page.wait_for_selector("#text-query[hidden]", state="attached")
        page.get_by_label("Query image").set_input_files(str(probe))
        page.get_by_role("button", name="Search").click()
        page.wait_for_selector("#results li")
        assert page.locator("#results li .item-id").first.inner_text() == "group0/char04/02.png"
        page.locator("#results li").nth(1).get_by_role("button", name="Not duplicate").click()
        page.wait_for_selector("#results li:nth-child(2) .said:has-text('saved')")
        page.close()
        with httpx.Client(base_url=base) as http:
            assert http.get("/feedback", params={"query": "02.png"}).json()["counts"]["not_duplicate"] == 1
    assert problems == []


def test_a_text_index_refuses_images_clearly(index_copy):
    with running(index_copy) as base, httpx.Client(base_url=base) as http:
        answer = http.post("/search", json={"images": ["aGVsbG8="]})
        assert answer.status_code == 422 and "holds texts" in json.dumps(answer.json()["detail"])
        verdict = http.post("/feedback", json={"query_image": "aGVsbG8=", "id": "faq-001", "duplicate": True})
        assert verdict.status_code == 422 and "holds texts" in verdict.json()["detail"]


def test_reading_images_in_path_order_skips_other_files(tmp_path):
    make_tree(tmp_path / "t", groups=1, classes=2, drawers=2)
    (tmp_path / "t" / "README.txt").write_text("not an image")
    ids = [row.id for row in read_images(tmp_path / "t")]
    assert ids == sorted(ids) and len(ids) == 4 and all(i.endswith(".png") for i in ids)


def test_a_collapsed_batch_hard_loss_falls_back_to_batch_all_from_the_best_epoch(glyphs, tmp_path, monkeypatch):
    from retrieval.images import class_tree as tree
    from retrieval.training import images as training

    monkeypatch.setattr(training, "COLLAPSED", -1.0)  # every batch-hard epoch looks collapsed
    config = training.ImageTrainConfig(epochs=4, warmup_epochs=2, image_size=16, dev_episodes=50)
    summary = training.train_cnn(tree(glyphs["dev"]), tree(glyphs["test"]), config, tmp_path / "m")
    assert [e["loss"] for e in summary["epochs"]] == ["batch-all", "batch-all", "batch-hard", "batch-all"]
    assert (tmp_path / "m" / "model.pt").is_file()


def test_joined_halves_take_each_side_from_its_own_image():
    import torch

    from retrieval.training.images import join_halves

    first, second = torch.zeros(2, 1, 6, 6), torch.ones(2, 1, 6, 6)
    joined = join_halves(first, second, torch.tensor([True, False]))
    assert torch.equal(joined[0, 0, :, :3], torch.zeros(6, 3)) and torch.equal(joined[0, 0, :, 3:], torch.ones(6, 3))
    assert torch.equal(joined[1, 0, :3], torch.zeros(3, 6)) and torch.equal(joined[1, 0, 3:], torch.ones(3, 6))


def test_composed_classes_are_new_classes_made_of_two_real_ones():
    import torch

    from retrieval.training.images import _Draw, _Sampler

    # 6 classes of 5 images; every pixel of image n holds n, so each half names its source image
    pixels = torch.arange(30, dtype=torch.float32)[:, None, None, None].expand(30, 1, 8, 8).clone()
    labels = np.repeat(np.arange(6), 5)
    sampler = _Sampler(labels, per_batch=4, per_class=3, seed=1)
    batch, got = _Draw(pixels, labels, sampler, torch.Generator().manual_seed(0), False, 0.0, 1.0, composed=2)()
    assert batch.shape == (12, 1, 8, 8) and got.tolist()[6:] == [6, 6, 6, 7, 7, 7]
    assert len(set(got.tolist()[:6])) == 2 and max(got.tolist()[:6]) < 6  # two real classes first
    for row in range(6, 12):
        corners = {int(batch[row, 0, 0, 0]), int(batch[row, 0, 7, 7])}  # one from each half
        assert len(corners) == 2 and len({int(labels[n]) for n in corners}) == 2
    for new in (range(6, 9), range(9, 12)):  # a new class's images share their two source classes
        assert len({(int(labels[int(batch[r, 0, 0, 0])]), int(labels[int(batch[r, 0, 7, 7])])) for r in new}) == 1


def test_the_selective_loss_only_pushes_a_negative_that_is_nearer_than_the_positive():
    import torch

    from retrieval.training.losses import batch_hard_triplet_loss, selective_contrastive_loss

    def unit(*degrees: float) -> torch.Tensor:
        angles = torch.tensor(degrees) * torch.pi / 180
        return torch.stack([angles.cos(), angles.sin()], dim=1)

    labels = torch.tensor([0, 0, 1])
    # anchor 0's positive lies 60 degrees away, its negative 10: inverted; cos 10 = 0.9848
    vectors = unit(0.0, 60.0, 10.0)
    loss = selective_contrastive_loss(vectors, labels, 0.3)
    hard = batch_hard_triplet_loss(vectors, labels, 0.3)
    # anchor 1: positive 0 (cos 60 = 0.5), negative 2 (cos 50 = 0.6428): inverted too; anchor 2 has no positive
    assert loss.item() == pytest.approx((0.9848 + 0.6428) / 2, abs=1e-4)
    assert hard.item() == pytest.approx((0.9848 - 0.5 + 0.3 + 0.6428 - 0.5 + 0.3) / 2, abs=1e-4)
    ordered = unit(0.0, 20.0, 90.0)  # positive nearer than the negative: the plain triplet term
    assert selective_contrastive_loss(ordered, labels, 0.5).item() == pytest.approx(
        batch_hard_triplet_loss(ordered, labels, 0.5).item(), abs=1e-6)


def test_hard_loss_selective_trains_after_the_warm_up_and_is_recorded(glyphs, tmp_path):
    from retrieval.images import class_tree as tree
    from retrieval.training import images as training

    config = training.ImageTrainConfig(epochs=3, warmup_epochs=1, image_size=16, dev_episodes=50,
                                       hard_loss="selective")
    summary = training.train_cnn(tree(glyphs["dev"]), tree(glyphs["test"]), config, tmp_path / "m")
    assert [e["loss"] for e in summary["epochs"]] == ["batch-all", "selective", "selective"]
    assert all(0 < e["mean_loss"] < 2 for e in summary["epochs"])
    result = twin("train", glyphs["dev"], "--encoder", "cnn", "--out", tmp_path / "c", "--epochs", "1",
                  "--image-size", "16", "--hard-loss", "selective")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c" / "twin_training.json").read_text())["config"]["hard_loss"] == "selective"
