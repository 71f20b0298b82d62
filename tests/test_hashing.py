"""The hash contract: only inputs count, each named; the stat cache is a hint, never the truth."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time

import pytest

from reconciler.desired.digest import Digester, read_digest
from reconciler.desired.secrets import SecretSource
from reconciler.desired.statcache import RACY_WINDOW_NS, StatCache
from reconciler.desired.state import desire
from reconciler.desired.wheels import WheelCache
from reconciler.spec.package import load_package


@pytest.fixture
def digester(tmp_path):
    cache = StatCache(tmp_path / "stat.sqlite")
    yield Digester(cache)
    cache.close()


def desired_of(package_dir, digester, tmp_path):
    package = load_package(package_dir / "package.yaml")
    return desire(package, digester, WheelCache(tmp_path / "wheels"), frozen=True, secrets=SecretSource(tmp_path))


def edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


def test_key_order_comments_labels_and_description_change_no_hash(package_dir, digester, tmp_path):
    before = desired_of(package_dir, digester, tmp_path)
    (package_dir / "package.yaml").write_text(
        "# a comment\n"
        "inference: {environment: {pip: []}}   # moved up\n"
        "description: for people\n"
        "labels: {owner: me}\n"
        "models: [{path: model/model.txt, version: 1, name: demo_model}]\n"
        "name: demo\n"
        "output: {directory: elsewhere}\n"
    )
    after = desired_of(package_dir, digester, tmp_path)
    assert (after.image_hash, after.container_hash) == (before.image_hash, before.container_hash)


@pytest.mark.parametrize(
    "change, changed_input",
    [
        (lambda d: (d / "score.py").write_text((d / "score.py").read_text() + "\n# edit\n"), "app/score.py"),
        (lambda d: (d / "model" / "model.txt").write_text("3.0"), "models/demo_model/1/model.txt"),
        (lambda d: (d / "helper.py").write_text("X = 1\n"), "app/helper.py"),
        (lambda d: os.chmod(d / "score.py", 0o755), "app/score.py"),
        (
            lambda d: edit(d / "package.yaml", "pip: []", "pip: []\n    variables: {A: b}"),
            "inference.environment.variables",
        ),
        (
            lambda d: edit(d / "package.yaml", "pip: []", "pip: []\n    base_image: other:1"),
            "inference.environment.base_image",
        ),
        (lambda d: edit(d / "package.yaml", "version: 1", "version: 2"), "models"),
    ],
)
def test_each_input_changes_the_image_hash_and_is_named(package_dir, digester, tmp_path, change, changed_input):
    before = desired_of(package_dir, digester, tmp_path)
    change(package_dir)
    after = desired_of(package_dir, digester, tmp_path)
    assert after.image_hash != before.image_hash
    assert after.container_hash != before.container_hash
    changed = {k for k in before.inputs.keys() | after.inputs.keys() if before.inputs.get(k) != after.inputs.get(k)}
    assert changed_input in changed


@pytest.mark.parametrize("proxy", [True, False])
def test_a_port_change_never_changes_the_image_and_moves_the_proxy_or_the_container(
    package_dir, digester, tmp_path, proxy
):
    manifest = package_dir / "package.yaml"
    base = manifest.read_text()
    manifest.write_text(base + f"output: {{mode: container, container: {{proxy: {str(proxy).lower()}, port: 6789}}}}\n")
    before = desired_of(package_dir, digester, tmp_path)
    manifest.write_text(base + f"output: {{mode: container, container: {{proxy: {str(proxy).lower()}, port: 7000}}}}\n")
    after = desired_of(package_dir, digester, tmp_path)
    assert after.image_hash == before.image_hash
    if proxy:  # the port is the proxy's: the container that serves stays
        assert after.container_hash == before.container_hash and after.proxy_hash != before.proxy_hash
    else:
        assert after.container_hash != before.container_hash and after.proxy_hash == before.proxy_hash == ""


def test_ignored_hidden_and_generated_files_are_left_out(package_dir, digester, tmp_path):
    before = desired_of(package_dir, digester, tmp_path)
    (package_dir / ".env").write_text("SECRET=1\n")
    (package_dir / "__pycache__").mkdir()
    (package_dir / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"\0")
    (package_dir / "notes.md").write_text("ignored\n")
    (package_dir / "data").mkdir()
    (package_dir / "data" / "big.csv").write_text("1,2\n")
    (package_dir / ".reconcilerignore").write_text("notes.md\ndata/\n")
    (package_dir / "build" / "demo").mkdir(parents=True)
    (package_dir / "build" / "demo" / "x.py").write_text("")
    (package_dir / "nested").mkdir()
    (package_dir / "nested" / "package.yaml").write_text("name: other\n")
    after = desired_of(package_dir, digester, tmp_path)
    assert after.image_hash == before.image_hash
    assert sorted(f.destination for f in after.files) == ["app/score.py", "models/demo_model/1/model.txt"]


def test_hidden_file_comes_back_with_a_negation(package_dir, digester, tmp_path):
    (package_dir / ".config.json").write_text("{}")
    (package_dir / ".reconcilerignore").write_text("!.config.json\n")
    desired = desired_of(package_dir, digester, tmp_path)
    assert "app/.config.json" in desired.inputs


def test_symlink_inside_the_repository_is_followed(package_dir, digester, tmp_path, repo):
    (repo / "shared").mkdir()
    (repo / "shared" / "util.py").write_text("U = 1\n")
    os.symlink(repo / "shared", package_dir / "shared")
    desired = desired_of(package_dir, digester, tmp_path)
    assert "app/shared/util.py" in desired.inputs


def test_symlink_leaving_the_repository_is_refused(package_dir, digester, tmp_path_factory, tmp_path):
    from reconciler.core.errors import InvalidInput

    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "secret.py").write_text("")
    os.symlink(outside / "secret.py", package_dir / "secret.py")
    with pytest.raises(InvalidInput) as caught:
        desired_of(package_dir, digester, tmp_path)
    [problem] = caught.value.problems
    assert problem.field == "inference.source_directory" and "outside the repository" in problem.message


def test_entry_script_excluded_by_ignore_file_is_an_error(package_dir, digester, tmp_path):
    from reconciler.core.errors import InvalidInput

    (package_dir / ".reconcilerignore").write_text("score.py\n")
    with pytest.raises(InvalidInput) as caught:
        desired_of(package_dir, digester, tmp_path)
    assert "left out of the image" in caught.value.problems[0].message


def test_hash_is_stable_across_processes_and_copies(package_dir, digester, tmp_path, repo):
    first = desired_of(package_dir, digester, tmp_path)
    copy = repo / "copy"
    shutil.copytree(package_dir, copy)
    second = desired_of(copy, Digester(StatCache(None)), tmp_path)
    assert second.image_hash == first.image_hash


# -- the stat cache -------------------------------------------------------------------


def _old(path, seconds=10):
    """Backdate a file so its cache entry is not 'racy'."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_unchanged_file_is_never_read_twice(tmp_path):
    data = tmp_path / "model.bin"
    data.write_bytes(os.urandom(5 * 1024 * 1024))
    cache = StatCache(tmp_path / "stat.sqlite")
    first = Digester(cache)
    digest = first.file(str(data))
    assert first.files_read == 1
    cache.close()
    # ctime moved with the write above; entries only count once the file has been
    # still for a while, so wait out the racy window as a real second run would.
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)
    cache = StatCache(tmp_path / "stat.sqlite")
    second = Digester(cache)
    assert second.file(str(data)) == digest  # hashed again: the first entry was racy
    cache.close()
    cache = StatCache(tmp_path / "stat.sqlite")
    third = Digester(cache)
    assert third.file(str(data)) == digest
    assert third.files_read == 0
    cache.close()
    assert digest == read_digest(str(data), data.stat().st_size)


def test_changed_file_is_read_again_even_with_same_size_and_mtime(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("aaaa")
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)
    cache = StatCache(tmp_path / "stat.sqlite")
    digester = Digester(cache)
    old = digester.file(str(path))
    stat = path.stat()
    path.write_text("bbbb")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: ctime still moves
    assert digester.file(str(path)) != old
    cache.close()


def test_corrupt_cache_is_discarded_and_rebuilt(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("content")
    database = tmp_path / "stat.sqlite"
    database.write_bytes(b"this is not a database" * 100)
    cache = StatCache(database)
    digester = Digester(cache)
    assert digester.file(str(path)) == read_digest(str(path), path.stat().st_size)
    cache.close()
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM files").fetchone() == (1,)


def test_tampered_entry_is_not_trusted(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("content")
    _old(path)
    database = tmp_path / "stat.sqlite"
    cache = StatCache(database)
    Digester(cache).file(str(path))
    cache.close()
    with sqlite3.connect(database) as db:
        db.execute("UPDATE files SET digest = 'not-a-digest'")
    cache = StatCache(database)
    digester = Digester(cache)
    assert digester.file(str(path)) == read_digest(str(path), path.stat().st_size)
    assert digester.files_read == 1
    cache.close()


def test_cache_of_another_schema_is_replaced(tmp_path):
    database = tmp_path / "stat.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema', '999')")
    cache = StatCache(database)
    path = tmp_path / "f.txt"
    path.write_text("x")
    Digester(cache).file(str(path))
    cache.close()
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT value FROM meta").fetchone() == ("1",)
