"""Exemplar pairing for exemplar-based systems (CoCosNet, issue 25): the official retrieval lists and their errors,
the cached class-histogram retrieval, the official draw (hard 0.2 / easy 0.5 / self 0.3), the pipelines' ref keys
with exact resume, `generate(..., exemplar=)` and the evaluation's pairing, on a test-only system that copies its
exemplar."""

import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from configs.common import data_settings, exemplar_settings
from data_pipelines import exemplars, pipeline, scenes, sources
from data_pipelines.sources.base import DatasetError, Example
from synth import generate, models
from synth.evaluation import data as eval_data
from synth.evaluation import sampling

H = W = 16
NUM_TRAIN, NUM_VAL, BATCH = 24, 5, 4


def _data(**exemplar_fields):
    return mlc.ConfigDict(dict(
        **data_settings(), exemplars=exemplar_settings(top_k=4, **exemplar_fields), name="scenes", root="",
        use_instance=True, scenes=dict(height=H, width=W, seed=0, num_train=NUM_TRAIN, num_val=NUM_VAL),
        preprocess=dict(flip=True)))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYNTH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "exemplar_cache"))


# -- retrieval


def test_nearest_ranks_by_l1_with_ties_to_the_lower_index_and_leaves_the_image_out():
    hist = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0], [0.9, 0.1]])
    refs = exemplars.nearest(hist, hist, 3, "l1", exclude_self=True)
    np.testing.assert_array_equal(refs, [[4, 1, 2], [2, 4, 0], [1, 4, 0], [1, 2, 4], [0, 1, 2]])  # 0 and 3 tie
    assert exemplars.nearest(hist, hist, 10, exclude_self=True).shape == (5, 4)  # k capped at the candidates
    cosine = exemplars.nearest(np.array([[1.0, 1.0]]), hist, 2, "cosine")  # direction only
    np.testing.assert_array_equal(cosine, [[1, 2]])
    assert exemplars.class_histogram(np.array([[0, 0], [2, 255]]), 3, 255).tolist() == [2 / 3, 0, 1 / 3]
    with pytest.raises(DatasetError, match="at least 2 training examples"):
        exemplars.nearest(hist[:1], hist[:1], 3, exclude_self=True)


def test_retrieval_is_cached_per_dataset_and_recomputed_for_other_data(monkeypatch, caplog):
    train = sources.get_source(_data(), "train")
    refs = train.exemplars.references
    assert refs.shape == (NUM_TRAIN, 4) and not (refs == np.arange(NUM_TRAIN)[:, None]).any()
    hist = exemplars.class_histograms(train.exemplars.query)
    np.testing.assert_array_equal(refs, exemplars.nearest(hist, hist, 4, exclude_self=True))
    computed, real = [], exemplars.class_histograms
    monkeypatch.setattr(exemplars, "class_histograms", lambda s: computed.append(s.num_examples) or real(s))
    np.testing.assert_array_equal(sources.get_source(_data(), "train").exemplars.references, refs)
    other = _data()
    other.scenes.num_train = NUM_TRAIN + 1
    assert sources.get_source(other, "train").exemplars.references.shape == (NUM_TRAIN + 1, 4)
    np.testing.assert_array_equal(sources.get_source(_data(), "train").exemplars.references, refs)
    assert computed == [NUM_TRAIN + 1]  # other data gets its own files; the first ones stay
    damaged = sorted(exemplars.cache_dir().glob("retrieval_scenes_train_*.npz"))
    for path in damaged:
        path.write_bytes(b"not a zip")
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(sources.get_source(_data(), "train").exemplars.references, refs)
    assert "unreadable" in caplog.text and computed == [NUM_TRAIN + 1]  # re-ranked from the cached histograms


# -- the official draw


def _fake_source(keys, split, paths=None):
    examples = tuple(Example(key=k, label=f"/l/{k}.png", image=p) for k, p in zip(keys, paths or keys))
    return sources.Source(sources.dataset_spec(_data()), split, len(keys), lambda i: {}, lambda i: keys[i], examples)


def test_training_draws_hard_easy_and_self_as_the_official_dataset():
    query = _fake_source([f"t{i}" for i in range(3)], "train")
    pairing = exemplars.Exemplars(exemplars.Settings(), query, lambda: None)
    pairing.__dict__["references"] = np.array([[1, 2, 9], [0, 2, 8], [0, 1, 7]])
    draws = [pairing.draw(5, p, p % 3) for p in range(20000)]
    assert draws == [pairing.draw(5, p, p % 3) for p in range(20000)]  # a pure function of (seed, position, index)
    kinds = np.array([0 if s else (2 if r >= 7 else 1) for r, s in draws])  # 0 self, 1 easy (first), 2 hard (last)
    assert all(r == p % 3 for p, (r, s) in enumerate(draws) if s)
    assert all(r == [1, 0, 0][p % 3] for p, (r, s) in enumerate(draws) if not s and r < 7)
    np.testing.assert_allclose(np.bincount(kinds) / len(kinds), [0.3, 0.5, 0.2], atol=0.012)
    assert pairing.draw(6, 0, 0) != pairing.draw(5, 0, 0) or pairing.draw(6, 1, 0) != pairing.draw(5, 1, 0)


# -- the official lists


LIST_VAL = ["ADE_val_00000001", "ADE_val_00000002"]
LIST_TRAIN = ["ADE_train_00000007", "ADE_train_00000003", "ADE_train_00000005"]


def _list_sources():
    val = _fake_source(LIST_VAL, "validation", [f"/d/images/validation/{k}.jpg" for k in LIST_VAL])
    train = _fake_source(LIST_TRAIN, "train", [f"/d/images/training/{k}.jpg" for k in LIST_TRAIN])
    return val, train


def test_official_lists_give_first_and_last_references_matched_by_name_path_or_stem(tmp_path):
    val, train = _list_sources()
    path = tmp_path / "ade20k_ref_test.txt"
    path.write_text("ADE_val_00000002.jpg,ADE_train_00000005.jpg\n\n"
                    "ADE_val_00000001.jpg,ADE_train_00000003.jpg,ADE_train_00000007,training\\ADE_train_00000005.jpg\n")
    np.testing.assert_array_equal(exemplars.read_list(str(path), val, train), [[1, 2], [2, 2]])
    fashion = _fake_source(["a", "b"], "train", ["/r/img/WOMEN/Dresses/id_1/02_1_front.jpg",
                                                 "/r/img/MEN/Denim/id_2/02_1_front.jpg"])
    path.write_text("img\\WOMEN\\Dresses\\id_1\\02_1_front.jpg,img\\MEN\\Denim\\id_2\\02_1_front.jpg\n"
                    "img\\MEN\\Denim\\id_2\\02_1_front.jpg,img\\WOMEN\\Dresses\\id_1\\02_1_front.jpg\n")
    np.testing.assert_array_equal(exemplars.read_list(str(path), fashion, fashion), [[1, 1], [0, 0]])


@pytest.mark.parametrize("text, message", [
    ("ADE_val_00000001.jpg\n", r"line 1: 'ADE_val_00000001.jpg' is not an image name followed by its references"),
    ("ADE_val_00000001.jpg,ADE_train_00000007.jpg\nADE_val_00000009.jpg,ADE_train_00000007.jpg\n",
     r"line 2: image 'ADE_val_00000009.jpg' is not in scenes\[validation\] \(2 examples"),
    ("ADE_val_00000001.jpg,ADE_train_00000007.jpg,ADE_train_00000004.jpg\n",
     r"line 1: reference 'ADE_train_00000004.jpg' of 'ADE_val_00000001.jpg' is not in scenes\[train\]"),
    ("ADE_val_00000001.jpg,ADE_train_00000007.jpg\nADE_val_00000001,ADE_train_00000003.jpg\n",
     r"line 2: image 'ADE_val_00000001' was already listed on line 1"),
    ("ADE_val_00000001.jpg,ADE_train_00000007.jpg\n",
     r"has no line for 1 of the 2 examples of scenes\[validation\], e.g. 'ADE_val_00000002'"),
])
def test_bad_lists_name_the_file_line_and_name(tmp_path, text, message):
    val, train = _list_sources()
    path = tmp_path / "ref.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=str(path).replace(".", r"\.") + ".*" + message):
        exemplars.read_list(str(path), val, train)


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(DatasetError, match=r"config.data.exemplars.validation_list = '/nowhere.txt': file not found"):
        _ = sources.get_source(_data(validation_list="/nowhere.txt"), "validation").exemplars.references
    with pytest.raises(ValueError, match=r"hard_reference_probability = 0.8: must be <= real_reference_probability"):
        sources.get_source(_data(hard_reference_probability=0.8), "train")
    bad = _data(distance="l2")
    bad.exemplars.top_k = 0
    problems = exemplars.config_problems(mlc.ConfigDict({"data": bad.to_dict()}))
    assert problems == ["config.data.exemplars.top_k = 0: must be an integer >= 1",
                        "config.data.exemplars.distance = 'l2': must be one of 'l1', 'cosine'"]
    with pytest.raises(ValueError, match="exemplar_settings\\(\\) takes no field topk"):
        exemplar_settings(topk=3)


# -- the pipelines


def _train_batches(source, start_step=0, n=3):
    it = iter(pipeline.train_dataset(source, sources.preprocess_of(_data()), BATCH, seed=3, start_step=start_step,
                                     process_index=0, process_count=1, num_parallel_calls=1))
    return [next(it) for _ in range(n)]


@pytest.fixture(scope="module")
def train_source():
    return sources.get_source(_data(), "train")


@pytest.fixture(scope="module")
def stream(train_source):
    return _train_batches(train_source)


def _same_or_mirrored(a, b):
    return np.array_equal(a, b) or np.array_equal(a, b[:, ::-1])


def test_training_batches_carry_the_drawn_exemplar_with_its_own_flip(train_source, stream):
    pairing, pool = train_source.exemplars, train_source.exemplars.pool
    selves = 0
    for step, batch in enumerate(stream):
        assert batch["ref_label"].shape == (BATCH, H, W) and batch["ref_image"].shape == (BATCH, H, W, 3)
        assert batch["self_ref"].dtype == np.float32
        for row in range(BATCH):
            ref, is_self = pairing.draw(3 * 1_000_003, step * BATCH + row, int(batch["index"][row]))
            assert batch["self_ref"][row] == float(is_self)
            ex = pool.load(ref)
            assert _same_or_mirrored(batch["ref_label"][row], ex["label"].astype(np.int32))
            assert _same_or_mirrored(np.round((batch["ref_image"][row] + 1) * 127.5), ex["image"].astype(np.float64))
            if is_self:
                selves += 1
                assert ref == batch["index"][row]
            else:
                assert ref in pairing.references[batch["index"][row]][[0, -1]]
    assert 0 < selves < 3 * BATCH


def test_a_resumed_stream_pairs_exactly_as_the_uninterrupted_one(train_source, stream):
    resumed = _train_batches(train_source, start_step=2, n=1)[0]
    assert set(resumed) == set(stream[2])
    for k in resumed:
        np.testing.assert_array_equal(resumed[k], stream[2][k], err_msg=k)


def test_evaluation_batches_carry_the_first_training_reference():
    val = sources.get_source(_data(), "validation")
    batch = next(iter(pipeline.eval_dataset(val, sources.preprocess_of(_data()), 8, process_index=0,
                                            process_count=1)))
    pairing = val.exemplars
    assert pairing.pool.split == "train" and not batch["self_ref"].any()
    for row, index in enumerate(batch["index"]):
        ex = pairing.pool.load(int(pairing.references[max(index, 0), 0]))  # padding rows repeat example 0
        np.testing.assert_array_equal(batch["ref_label"][row], ex["label"])
        np.testing.assert_array_equal(np.round((batch["ref_image"][row] + 1) * 127.5), ex["image"])


# -- generate and the evaluation, on a test-only system


class CopyExemplar(models.System):
    """Test-only: renders a layout by copying its exemplar (so the output shows which exemplar it was given)."""

    trainer = "gan"
    batch_keys = ("label", "ref_label", "ref_image")

    @classmethod
    def build_networks(cls, model_config, height, width):
        return {"g": nn.Dense(1)}

    def init(self, rng):
        return {"g": {"params": {"w": jnp.zeros(1)}}}

    def sample(self, variables, batch, key=None, **controls):
        return batch["ref_image"] + 0 * variables["g"]["params"]["w"][0]


class LayoutOnly(CopyExemplar):
    batch_keys = ("label",)

    def sample(self, variables, batch, key=None, **controls):
        return jnp.zeros(batch["label"].shape + (3,))


def _model(cls, name):
    config = mlc.ConfigDict({"model": {"name": name}, "data": _data().to_dict()})
    spec = sources.dataset_spec(config.data)
    system = cls(config, spec, H, W)
    return generate.Model(system, system.init(None), spec, config, H, W, 1)


def test_generate_takes_validates_and_resizes_the_exemplar():
    model = _model(CopyExemplar, "copy_exemplar")
    s = scenes.render(3, height=32, width=32)
    out = generate.generate(model, np.zeros((2, H, W), np.int32), exemplar=(s.image[::2, ::2], s.label[::2, ::2]))
    np.testing.assert_array_equal(out, np.stack([s.image[::2, ::2]] * 2))  # one exemplar serves both layouts
    resized = generate.generate(model, np.zeros((1, H, W), np.int32), exemplar=(s.image, s.label))
    assert resized.shape == (1, H, W, 3)  # the exemplar resized to the model's size
    with pytest.raises(ValueError, match="copy_exemplar model renders a layout in the style of an exemplar"):
        generate.generate(model, np.zeros((1, H, W), np.int32))
    for exemplar, message in [
            ((s.image.astype(np.float32), s.label), r"exemplar image must be uint8 \[H, W, 3\].*float32\[32, 32, 3\]"),
            ((s.image, s.label[:16]), r"exemplar image \[32, 32\] and its layout \[16, 32\] differ in size"),
            ((s.image, np.full((32, 32), 12)), r"exemplar layout: label_map holds id\(s\) \[12\] outside 0..11"),
            ((np.stack([s.image] * 3), np.stack([s.label] * 3)), "3 exemplars for 2 layouts"),
            (s.image, "exemplar must be a pair \\(image, layout\\)")]:
        with pytest.raises(ValueError, match=message):
            generate.generate(model, np.zeros((2, H, W), np.int32), exemplar=exemplar)
    with pytest.raises(ValueError, match="A layout_only model takes no exemplar"):
        generate.generate(_model(LayoutOnly, "layout_only"), np.zeros((1, H, W), np.int32),
                          exemplar=(s.image, s.label))


def test_evaluation_feeds_each_validation_layout_its_exemplar():
    model = _model(CopyExemplar, "copy_exemplar")
    source, pp = eval_data.validation_source(model, None)
    chunks = eval_data.chunks_of(NUM_VAL, 4)
    pairing = source.exemplars
    seen = []
    for c, batch, count in eval_data.batches(source, pp, chunks):
        fake = sampling.chunk_samples(model, batch["label"], None, jax.random.key(0), c, 1,
                                      exemplar=sampling.exemplar_of(model, batch))
        for j in range(count):
            expected = pairing.pool.load(pairing.first(int(batch["index"][j])))["image"]
            np.testing.assert_array_equal(fake[0, j], expected)
            seen.append(int(batch["index"][j]))
    assert seen == list(range(NUM_VAL))
    assert sampling.exemplar_fields(model, pairing)["exemplars"]["pool"] == "scenes[train]"
    assert sampling.exemplar_of(_model(LayoutOnly, "layout_only"), batch) is None
    # scenes-v1 renders its own validation scenes: they are paired with the model's training scenes the same way
    indices = list(scenes.SceneSplits().indices("validation"))[:3]
    scene_pairing = eval_data.scene_exemplars(model, indices, H, W)
    hist = exemplars.class_histograms(scene_pairing.query)
    pool_hist = exemplars.class_histograms(scene_pairing.pool)
    assert [scene_pairing.first(j) for j in range(3)] == exemplars.nearest(hist, pool_hist, 1)[:, 0].tolist()
    assert eval_data.scene_exemplars(_model(LayoutOnly, "layout_only"), indices, H, W) is None
    no_section = _model(CopyExemplar, "copy_exemplar")
    del no_section.config.data["exemplars"]
    with pytest.raises(ValueError, match="reads exemplars but its config has no data.exemplars section"):
        sampling.exemplar_fields(no_section, eval_data.validation_source(no_section, None)[0].exemplars)


# -- the scenes evidence bench's scoring (bench/cocosnet_exemplar_transfer.py)


def test_transfer_score_is_one_for_the_exemplar_itself_and_chance_for_the_layouts_own_image():
    from tests.helpers import import_bench

    bench = import_bench("cocosnet_exemplar_transfer")

    pairs = bench.find_pairs(24, 300, start=0, seed=0, height=64, width=64)
    for layout, a, b in pairs:
        assert a.global_mode != b.global_mode and bench.car_colour(a) != bench.car_colour(b) is not None
    jobs = [(layout, e, o) for layout, a, b in pairs for e, o in ((a, b), (b, a))]
    itself = bench.score([bench.Record(e.image, e, e, o) for _, e, o in jobs])
    for group in ("light", "car_colour"):
        assert itself[group]["match"] == 1.0 and itself[group]["match_other_exemplar"] == 0.0
        assert itself[group]["scored"] >= 48 and itself[group]["chance"] < 0.6
    assert all(c["share"] == 1.0 and c["scored"] == 48 for c in itself["closer_to_exemplar"].values())
    own = bench.score([bench.Record(layout.image, layout, e, o) for layout, e, o in jobs])
    assert all(c["share"] == 0.5 for c in own["closer_to_exemplar"].values())  # each layout: once each exemplar
    assert all(c["layouts"] == 24 and c["share"] == 0.5 and c["mean_shift_rgb"] == 0.0
               for c in own["exemplar_switch"].values())  # the same output whichever the exemplar


    def painted(layout, e):  # the layout's own image with its sky and cars in the exemplar's colours
        out = layout.image.copy()
        for c, reduce in ((scenes.SKY, np.median), (scenes.CAR, np.mean)):
            out[layout.label == c] = np.round(reduce(e.image[e.label == c].astype(np.float64), axis=0))
        return out

    follows = bench.score([bench.Record(painted(layout, e), layout, e, o) for layout, e, o in jobs])
    assert all(c["share"] == 1.0 and c["mean_shift_rgb"] > 5 for c in follows["exemplar_switch"].values())
    for group in ("light", "car_colour"):  # the layout's own image ignores the exemplar: both exemplars match alike
        g = own[group]
        assert abs(g["match"] - g["chance"]) < 0.12 and g["match"] == pytest.approx(g["match_other_exemplar"], abs=0.15)
    with pytest.raises(ValueError, match="cars of one colour mode"):
        no_car = next(s for s in (scenes.render(i, height=64, width=64) for i in range(50))
                      if bench.car_colour(s) is None)
        bench.score([bench.Record(no_car.image, no_car, no_car, no_car)])


def test_file_sources_pair_through_an_official_list_and_the_computed_retrieval(tmp_path):
    import source_fixtures as fx

    root = str(tmp_path / "ade")
    train = fx.ade20k(root, "training", count=3)
    val = fx.ade20k(root, "validation", count=2)
    listed = tmp_path / "ade20k_ref_test.txt"
    listed.write_text(f"{val[0]}.jpg,{train[2]}.jpg,{train[0]}.jpg\n{val[1]}.jpg,{train[1]}.jpg\n")
    data = mlc.ConfigDict(dict(**data_settings(), name="ade20k", root=root, preprocess=dict(load_size=32, crop_size=32),
                               exemplars=exemplar_settings(validation_list=str(listed), top_k=2)))
    source = sources.get_source(data, "validation")
    batch = next(iter(pipeline.eval_dataset(source, sources.preprocess_of(data), 2, process_index=0,
                                            process_count=1)))
    numbers = [fx.image_number(np.round((image + 1) * 127.5)) for image in batch["ref_image"]]
    assert numbers == [2, 1]  # the training examples the list names first (flat images numbered by example)
    # (ADE20K's file value n + 1 is class n)
    assert [int(np.bincount(lab.ravel()).argmax()) for lab in batch["ref_label"]] == [2, 1]
    # without a list: the nearest layouts by class histogram, each training image's own left out
    refs = sources.get_source(data, "train").exemplars.references
    assert refs.shape == (3, 2) and not (refs == np.arange(3)[:, None]).any()


def test_the_trainers_abstract_batch_holds_the_exemplar_keys_of_a_system_that_reads_them():
    from types import SimpleNamespace

    from synth.training import sharding
    from synth.training.base_trainer import BaseTrainer

    model = _model(CopyExemplar, "copy_exemplar")
    fake = SimpleNamespace(config=mlc.ConfigDict({"train": {"batch_size": 8}}), height=H, width=W,
                           system=model.system, spec=model.spec, mesh=sharding.make_mesh())
    fake.system.batch_keys = ("label", "ref_label", "ref_image", "self_ref")
    shapes = {k: (v.shape, v.dtype.name) for k, v in BaseTrainer.abstract_batch(fake).items()}
    assert shapes == {"label": ((8, H, W), "int32"), "ref_label": ((8, H, W), "int32"),
                      "ref_image": ((8, H, W, 3), "float32"), "self_ref": ((8,), "float32")}


def test_the_config_check_names_bad_exemplar_settings_and_a_missing_section():
    from configs import scenes_cocosnet
    from synth import config_check

    config = scenes_cocosnet.get_config("tiny")
    config_check.validate(config)
    config.data.exemplars.real_reference_probability = 1.5
    with pytest.raises(config_check.ConfigError, match=r"config.data.exemplars.real_reference_probability = 1.5"):
        config_check.validate(config)
    del config.data["exemplars"]
    with pytest.raises(config_check.ConfigError, match=r"config.data.exemplars is not set: a cocosnet model"):
        config_check.validate(config)
