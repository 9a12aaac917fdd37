"""The machine image cache: one image per recipe and suite, older recipes' images removed (quick, no build)."""

from __future__ import annotations

from labkit.backends.machine import image


def test_a_new_recipes_image_replaces_the_older_ones_of_its_suite_only(tmp_path):
    current = image.recipe_key("bookworm")
    for name in ("debian-bookworm-0123456789", "debian-bookworm-aaaaaaaaaa.partial", current,
                 "debian-trixie-0123456789"):
        (tmp_path / name / "rootfs").mkdir(parents=True)
    (tmp_path / ".lock").write_text("")
    removed = image.prune(tmp_path, keep=current, suite="bookworm")
    assert removed == ["debian-bookworm-0123456789", "debian-bookworm-aaaaaaaaaa.partial"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", current, "debian-trixie-0123456789"]


def test_the_recipe_key_changes_with_what_goes_into_the_image(monkeypatch):
    before = image.recipe_key("bookworm")
    monkeypatch.setattr(image, "PACKAGES", [*image.PACKAGES, "htop"])
    assert image.recipe_key("bookworm") != before
    assert image.recipe_key("bookworm").startswith("debian-bookworm-")
