"""Shared pytest fixtures of the cclm_hf test-suite."""

import os
from pathlib import Path


# Tests never reach the Hugging Face Hub: everything they load was created in the test itself.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402


# =====================================================================================================================
# Processing fixtures: tokenizer, images, Auto-class registration
# (used by test_tokenizer_training.py, test_image_processing.py, test_processing.py)
# =====================================================================================================================

# A few KB of parallel image captions in six languages, enough to train a tokenizer of a few hundred pieces.
MULTILINGUAL_CAPTIONS = {
    "en": [
        "A dog runs across the green park.",
        "Two cats are sleeping on a wooden table.",
        "A man rides a red bicycle down the street.",
        "A woman is reading a book in the garden.",
        "Children are playing football on the beach.",
        "A small boat floats on the calm lake.",
        "An old man is sitting on a bench.",
        "A girl in a blue dress holds an umbrella.",
        "Three birds fly over the snowy mountains.",
        "A chef is cooking pasta in a busy kitchen.",
    ],
    "de": [
        "Ein Hund läuft über den grünen Park.",
        "Zwei Katzen schlafen auf einem Holztisch.",
        "Ein Mann fährt ein rotes Fahrrad die Straße hinunter.",
        "Eine Frau liest ein Buch im Garten.",
        "Kinder spielen Fußball am Strand.",
        "Ein kleines Boot treibt auf dem ruhigen See.",
        "Ein alter Mann sitzt auf einer Bank.",
        "Ein Mädchen in einem blauen Kleid hält einen Regenschirm.",
        "Drei Vögel fliegen über die verschneiten Berge.",
        "Ein Koch kocht Nudeln in einer belebten Küche.",
    ],
    "fr": [
        "Un chien court à travers le parc vert.",
        "Deux chats dorment sur une table en bois.",
        "Un homme descend la rue sur un vélo rouge.",
        "Une femme lit un livre dans le jardin.",
        "Des enfants jouent au football sur la plage.",
        "Un petit bateau flotte sur le lac calme.",
        "Un vieil homme est assis sur un banc.",
        "Une fille en robe bleue tient un parapluie.",
        "Trois oiseaux volent au-dessus des montagnes enneigées.",
        "Un chef prépare des pâtes dans une cuisine animée.",
    ],
    "es": [
        "Un perro corre por el parque verde.",
        "Dos gatos duermen sobre una mesa de madera.",
        "Un hombre baja la calle en una bicicleta roja.",
        "Una mujer lee un libro en el jardín.",
        "Los niños juegan al fútbol en la playa.",
        "Un pequeño barco flota en el lago tranquilo.",
        "Un anciano está sentado en un banco.",
        "Una niña con un vestido azul sostiene un paraguas.",
        "Tres pájaros vuelan sobre las montañas nevadas.",
        "Un cocinero prepara pasta en una cocina concurrida.",
    ],
    "zh": [
        "一只狗在绿色的公园里奔跑。",
        "两只猫在木桌上睡觉。",
        "一个男人骑着红色的自行车沿街而下。",
        "一个女人在花园里看书。",
        "孩子们在海滩上踢足球。",
        "一艘小船漂浮在平静的湖面上。",
        "一位老人坐在长椅上。",
        "一个穿蓝色裙子的女孩拿着一把雨伞。",
        "三只鸟飞过白雪覆盖的山峰。",
        "一位厨师在繁忙的厨房里煮意大利面。",
    ],
    "ja": [
        "犬が緑の公園を走っている。",
        "二匹の猫が木のテーブルの上で寝ている。",
        "男性が赤い自転車で通りを走っている。",
        "女性が庭で本を読んでいる。",
        "子供たちが浜辺でサッカーをしている。",
        "小さなボートが静かな湖に浮かんでいる。",
        "老人がベンチに座っている。",
        "青いドレスの女の子が傘を持っている。",
        "三羽の鳥が雪山の上を飛んでいる。",
        "シェフが忙しい台所でパスタを作っている。",
    ],
}
TINY_TOKENIZER_VOCAB_SIZE = 400


@pytest.fixture(scope="session")
def multilingual_captions() -> dict[str, list[str]]:
    """Parallel captions keyed by language code (en, de, fr, es, zh, ja)."""
    return {lang: list(captions) for lang, captions in MULTILINGUAL_CAPTIONS.items()}


@pytest.fixture(scope="session")
def tiny_tokenizer(multilingual_captions):
    """An `XLMRobertaTokenizer` with a 400-piece Unigram vocabulary trained on `multilingual_captions` (offline, ms).

    Session-scoped: tests must not mutate it (copy it with `copy.deepcopy` first if they need to).
    """
    from cclm_hf.tokenizer_training import train_xlm_roberta_tokenizer

    texts = [caption for captions in multilingual_captions.values() for caption in captions]
    # Lower-cased copies too, so that text cleaned with `pre_caption` stays (mostly) in-vocabulary.
    texts += [text.lower() for text in texts]
    return train_xlm_roberta_tokenizer(texts, vocab_size=TINY_TOKENIZER_VOCAB_SIZE)


def _natural_image(height: int, width: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    # Smooth gradients plus hard-edged shapes and a thin line: exercises both the smooth and the ringing regime of the
    # bicubic kernel, unlike constant or white-noise images.
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width]
    red = 255.0 * x / max(width - 1, 1)
    green = 255.0 * y / max(height - 1, 1)
    blue = 128.0 + 100.0 * np.sin(x / 7.0) * np.cos(y / 11.0)
    image = Image.fromarray(np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(10):
        x0, y0 = int(rng.randint(0, width)), int(rng.randint(0, height))
        x1, y1 = x0 + int(rng.randint(3, max(width // 2, 4))), y0 + int(rng.randint(3, max(height // 2, 4)))
        color = tuple(int(c) for c in rng.randint(0, 256, size=3))
        (draw.rectangle if rng.randint(2) else draw.ellipse)([x0, y0, x1, y1], fill=color)
    draw.line([(0, 0), (width - 1, height - 1)], fill=(255, 255, 255), width=2)
    return image.convert(mode)


@pytest.fixture(scope="session")
def natural_image():
    """Factory `natural_image(height, width, seed=0, mode="RGB") -> PIL.Image.Image` of a deterministic picture."""
    return _natural_image


# =====================================================================================================================
# End of processing fixtures
# =====================================================================================================================


# =====================================================================================================================
# Parity fixtures: tensors produced by the ORIGINAL CCLM code (never edited)
# =====================================================================================================================


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """`$CCLM_PARITY_DIR`, by default `../shared/parity` beside the repository. Missing fixtures fail, never skip."""
    folder = Path(os.environ.get("CCLM_PARITY_DIR", Path(__file__).resolve().parents[2] / "shared" / "parity"))
    if not folder.is_dir():
        pytest.fail(f"parity fixtures not found at {folder}; set CCLM_PARITY_DIR to the shared/parity folder")
    return folder


# =====================================================================================================================
# Benchmark fixtures (tests/test_benchmark_*.py): a tiny ROOT in every benchmark's format, a tiny pre-trained model
# =====================================================================================================================


@pytest.fixture(scope="session")
def benchmark_root(tmp_path_factory) -> Path:
    """ROOT with tiny files of every benchmark in its distributed format (see tests/benchmark_fixtures.py).

    Session-scoped: tests must not modify it (copy what they need to break).
    """
    from benchmark_fixtures import build_benchmark_root

    return build_benchmark_root(tmp_path_factory.mktemp("benchmarks") / "ROOT")


@pytest.fixture(scope="session")
def tiny_pretrained_folder(tmp_path_factory, tiny_tokenizer) -> Path:
    """A pre-training folder as `examples/pretrain.py` writes it: a tiny `CCLMForPreTraining` and its processor."""
    from model_factories import tiny_config

    from cclm_hf import CCLMForPreTraining, CCLMImageProcessor, CCLMProcessor

    folder = tmp_path_factory.mktemp("tiny_pretrained")
    # smaller than tiny_config's default (1 text + 1 fusion layer, 16-wide Swin): the script tests run it many times
    config = tiny_config(
        vision_config={"image_size": 32, "embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4},
        text_config={
            "vocab_size": len(tiny_tokenizer),
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_fusion_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 40,
        },
    )
    CCLMForPreTraining(config).save_pretrained(folder)
    size = config.image_size
    CCLMProcessor(CCLMImageProcessor(size={"height": size, "width": size}), tiny_tokenizer).save_pretrained(folder)
    return folder
