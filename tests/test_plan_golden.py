"""The planner is pure: (desired, observed) -> actions with causes, checked as golden strings."""

from __future__ import annotations

from reconciler.observed.state import FolderState
from reconciler.plan import Intent, changed_inputs, plan_folder
from reconciler.plan.actions import Swap
from reconciler.spec.modes import Mode

INPUTS = {
    "Dockerfile": "d1",
    "app/score.py": "s1",
    "models/m/1/model.pkl": "m1",
    "package.lock": "l1",
    "inference.environment.variables": "v1",
}


def line(action) -> str:
    """An action as plan prints it: `str(action)` is the one printed form."""
    return f"  {action}"


INTENT = Intent("demo", Mode.DOCKERFILE, "build/demo", "a" * 64, "b" * 64, INPUTS)


def render(folder: FolderState) -> str:
    plan = plan_folder(INTENT, folder)
    return "\n".join([line(a) for a in plan.actions] + [f"error: {e}" for e in plan.errors])


def test_missing_folder_is_written():
    assert render(FolderState("missing")) == "  write build/demo  <- not written yet"


def test_in_sync_folder_needs_nothing():
    assert render(FolderState("ours", "a" * 64, dict(INPUTS))) == ""


def test_changed_inputs_are_named():
    old = {**INPUTS, "app/score.py": "s0", "package.lock": "l0"}
    assert render(FolderState("ours", "c" * 64, old)) == "  write build/demo  <- inputs changed: score.py, package.lock"


def test_added_and_removed_inputs_are_marked():
    old = {k: v for k, v in INPUTS.items() if k != "app/score.py"}
    old["app/old_helper.py"] = "h"
    assert (
        render(FolderState("ours", "c" * 64, old))
        == "  write build/demo  <- inputs changed: old_helper.py (gone), score.py (new)"
    )


def test_many_changes_are_summarised():
    old = {k: v + "x" for k, v in INPUTS.items()}
    assert render(FolderState("ours", "c" * 64, old)) == (
        "  write build/demo  <- inputs changed: score.py, models/m/1/model.pkl, package.lock, "
        "inference.environment.variables, 1 more"
    )


def test_same_inputs_with_another_hash_means_a_new_hash_schema():
    assert changed_inputs(INPUTS, INPUTS) == "reconciler's hash schema changed"


def test_hand_edits_are_drift():
    folder = FolderState("ours", "a" * 64, dict(INPUTS), ("Dockerfile edited", "app/extra.py added"))
    assert render(folder) == "  write build/demo  <- drift: Dockerfile edited, app/extra.py added"


def test_input_change_wins_over_drift_as_the_cause():
    folder = FolderState("ours", "c" * 64, {**INPUTS, "app/score.py": "s0"}, ("Dockerfile edited",))
    assert render(folder) == "  write build/demo  <- inputs changed: score.py"


def test_folders_that_are_not_ours_are_errors_not_actions():
    for status in ("foreign", "damaged", "other"):
        assert render(FolderState(status, detail=f"build/demo is {status}")) == f"error: build/demo is {status}"


# -- image and container modes ---------------------------------------------------------

from reconciler.observed.state import ContainerState, ImageState, Observed, image_state  # noqa: E402
from reconciler.plan import plan_cleanup, plan_package  # noqa: E402

H, C = "a" * 64, "b" * 64
CONTAINER = Intent(
    "demo",
    Mode.CONTAINER,
    "build/demo",
    H,
    C,
    INPUTS,
    base_image="python:3.11-slim",
    image="demo:aaaaaaaaaaaa",
    container="demo",
    host="127.0.0.1",
    port=6789,
)
IN_SYNC_FOLDER = FolderState("ours", H, dict(INPUTS))


def image(hash_=H, package="demo", id_="sha256:" + "1" * 64, manifest="/repo/demo/package.yaml"):
    return ImageState(id_, package, hash_, (f"{package}:{hash_[:12]}",), manifest)


def container(
    container_hash=C,
    image_hash=H,
    state="running",
    role="",
    name="demo",
    package="demo",
    port=6789,
    id_="c1",
    manifest="/repo/demo/package.yaml",
):
    return ContainerState(
        id_, name, package, container_hash, image_hash, state, "Up", manifest, role, port, "127.0.0.1"
    )


def render_package(intent, observed):
    plan = plan_package(intent, observed)
    return "\n".join(line(a) for a in plan.actions)


def test_container_mode_from_nothing():
    assert render_package(CONTAINER, Observed(FolderState("missing"), base_present=False)) == (
        "  pull python:3.11-slim  <- base image not present on the engine\n"
        "  write build/demo  <- not written yet\n"
        "  build demo:aaaaaaaaaaaa  <- not built yet\n"
        "  create demo on 127.0.0.1:6789  <- no container"
    )


def test_container_mode_in_sync():
    assert render_package(CONTAINER, Observed(IN_SYNC_FOLDER, [image()], [container()])) == ""


def test_code_edit_builds_and_recreates_with_the_cause():
    old = FolderState("ours", "c" * 64, {**INPUTS, "app/score.py": "s0"})
    observed = Observed(old, [image("c" * 64)], [container("d" * 64, "c" * 64)])
    assert render_package(CONTAINER, observed) == (
        "  write build/demo  <- inputs changed: score.py\n"
        "  build demo:aaaaaaaaaaaa  <- inputs changed: score.py\n"
        "  recreate demo on 127.0.0.1:6789  <- new image (inputs changed: score.py)"
    )


def test_port_change_recreates_without_a_build():
    observed = Observed(IN_SYNC_FOLDER, [image()], [container("d" * 64, port=7000)])
    assert render_package(CONTAINER, observed) == (
        "  recreate demo on 127.0.0.1:6789  <- container settings changed (was demo on 127.0.0.1:7000)"
    )


def test_stopped_container_is_started_and_leftovers_removed():
    observed = Observed(
        IN_SYNC_FOLDER,
        [image()],
        [container(state="exited"), container(role="canary", name="demo-canary-aaaa", id_="c2")],
    )
    assert render_package(CONTAINER, observed) == (
        "  start demo on 127.0.0.1:6789  <- container exited\n"
        "  remove container demo-canary-aaaa  <- canary left by an interrupted replacement"
    )


def test_push_when_the_registry_lacks_the_tag():
    intent = Intent(
        "demo",
        Mode.IMAGE,
        "build/demo",
        H,
        C,
        INPUTS,
        image="demo:aaaaaaaaaaaa",
        push_to="127.0.0.1:5000/demo:aaaaaaaaaaaa",
    )
    assert render_package(intent, Observed(IN_SYNC_FOLDER, [image()], registry_has=True)) == ""
    assert render_package(intent, Observed(IN_SYNC_FOLDER, [image()], registry_has=False)) == (
        "  push 127.0.0.1:5000/demo:aaaaaaaaaaaa  <- registry lacks the tag"
    )


def test_leaving_container_mode_removes_the_container():
    intent = Intent("demo", Mode.IMAGE, "build/demo", H, C, INPUTS, image="demo:aaaaaaaaaaaa")
    assert render_package(intent, Observed(IN_SYNC_FOLDER, [image()], [container()])) == (
        "  remove container demo  <- output.mode is image: no container wanted"
    )


def cleanup_lines(**overrides):
    arguments = dict(
        images=[
            image(),
            image("e" * 64, id_="sha256:" + "2" * 64),
            image(package="gone", id_="sha256:" + "3" * 64, manifest="/repo/gone/package.yaml"),
        ],
        containers=[container(), container(package="gone", name="gone", id_="c9", manifest="/repo/gone/package.yaml")],
        wanted={"/repo/demo/package.yaml": (H, C)},
        container_images={"c1": "sha256:" + "1" * 64, "c9": "sha256:" + "3" * 64},
        scope=["/repo"],
        prune=True,
        complete=True,
    )
    arguments.update(overrides)
    cleanup = plan_cleanup(**arguments)
    return [line(a) for a in cleanup.actions] + [f"note: {n}" for n in cleanup.notes]


def test_prune_removes_orphans_and_superseded_images():
    assert cleanup_lines() == [
        "  remove container gone  <- orphan: its manifest is gone",
        "  remove image gone:aaaaaaaaaaaa  <- orphan: its manifest is gone",
        "  remove image demo:eeeeeeeeeeee  <- superseded by a newer build",
    ]


def test_without_prune_orphans_are_only_noted():
    assert cleanup_lines(prune=False) == [
        "note: apply --prune removes container gone (gone: orphan: its manifest is gone)",
        "note: apply --prune removes image gone:aaaaaaaaaaaa (gone: orphan: its manifest is gone)",
    ]


def test_never_prune_when_a_manifest_failed_or_none_was_found():
    assert cleanup_lines(complete=False) == [
        "note: not pruned while a manifest has errors or none was found: container gone (gone: orphan: its manifest is gone)",
        "note: not pruned while a manifest has errors or none was found: image gone:aaaaaaaaaaaa (gone: orphan: its manifest is gone)",
    ]


def test_prune_stays_below_the_paths_given_and_spares_images_in_use():
    assert cleanup_lines(scope=["/repo/demo"]) == ["  remove image demo:eeeeeeeeeeee  <- superseded by a newer build"]
    in_use = {"c1": "sha256:" + "1" * 64, "c9": "sha256:" + "3" * 64, "by-hand": "sha256:" + "2" * 64}
    assert "  remove image demo:eeeeeeeeeeee  <- superseded by a newer build" not in cleanup_lines(
        container_images=in_use
    )


def test_dev_reload_only_when_nothing_else_is_needed():
    in_sync = Observed(IN_SYNC_FOLDER, [image()], [container()])
    assert render_package_reload(CONTAINER, in_sync) == "  reload demo on 127.0.0.1:6789  <- code changed (dev)"
    stopped = Observed(IN_SYNC_FOLDER, [image()], [container(state="exited")])
    assert render_package_reload(CONTAINER, stopped) == "  start demo on 127.0.0.1:6789  <- container exited"
    assert render_package_reload(CONTAINER, Observed(IN_SYNC_FOLDER, [image()], [])) == (
        "  create demo on 127.0.0.1:6789  <- no container"
    )


def render_package_reload(intent, observed):
    return "\n".join(line(a) for a in plan_package(intent, observed, reload=True).actions)


def test_every_payload_type_has_a_handler():
    import threading
    import typing

    from reconciler.execute import Executor
    from reconciler.plan.actions import Payload

    executor = Executor(engine=None, wheels=None, digester=None, build_slots=threading.BoundedSemaphore(1))
    assert set(executor.handlers) == set(typing.get_args(Payload))


def test_a_build_keeps_the_images_used_last_and_spares_those_in_use():
    intent = Intent(
        "demo",
        Mode.CONTAINER,
        "build/demo",
        H,
        C,
        INPUTS,
        image="demo:aaaaaaaaaaaa",
        container="demo",
        host="127.0.0.1",
        port=6789,
        manifest="/repo/demo/package.yaml",
        keep=2,
    )

    def old(letter, created, id_):
        return ImageState(
            id_, "demo", letter * 64, (f"demo:{letter * 12}",), "/repo/demo/package.yaml", created=created
        )

    images = [old("c", 300, "sha256:c"), old("d", 200, "sha256:d"), old("e", 100, "sha256:e")]
    by_hand = ImageState("sha256:f", "demo", "f" * 64, ("mine:1",), "/repo/demo/package.yaml", created=50)
    other_checkout = ImageState("sha256:g", "demo", "9" * 64, ("demo:999999999999",), "/elsewhere/package.yaml")
    serving = container("d" * 64, "c" * 64, id_="c1")
    serving = ContainerState(**{**serving.__dict__, "image_id": "sha256:c"})
    observed = Observed(
        IN_SYNC_FOLDER,
        images + [by_hand, other_checkout],
        [serving],
        images_in_use=frozenset({"sha256:c", "sha256:e", "sha256:f"}),
    )
    assert render_package(intent, observed) == (
        "  build demo:aaaaaaaaaaaa  <- no image for this hash\n"
        "  recreate demo on 127.0.0.1:6789  <- new image (no image for this hash)\n"
        "  remove image demo:dddddddddddd  <- not among the 2 used last (output.image.keep)"
    )


def test_images_built_within_one_second_are_ordered_by_its_fraction():
    """A cached build takes a fraction of a second: in whole seconds, the two images an inspect
    described were a tie, and retention removed the newer one."""
    from dataclasses import replace

    intent = replace(CONTAINER, manifest="/repo/demo/package.yaml", keep=2)

    def inspected(letter: str, created: str) -> ImageState:
        labels = {"reconciler.package": "demo", "reconciler.hash": letter * 64, "reconciler.manifest": intent.manifest}
        return image_state(
            {
                "Id": f"sha256:{letter}",
                "RepoTags": [f"demo:{letter * 12}"],
                "Created": created,
                "Config": {"Labels": labels},
            }
        )

    older, newer = inspected("b", "2026-12-02T13:41:17.1Z"), inspected("c", "2026-12-02T13:41:17.8Z")
    observed = Observed(IN_SYNC_FOLDER, [older, newer], [])  # as a listing may give them
    assert render_package(intent, observed).splitlines()[-1] == (
        "  remove image demo:bbbbbbbbbbbb  <- not among the 2 used last (output.image.keep)"
    )


# -- behind the proxy: every state an interrupted update can leave, and what finishes it --

PROXIED = Intent(
    "demo",
    Mode.CONTAINER,
    "build/demo",
    H,
    C,
    INPUTS,
    image="demo:aaaaaaaaaaaa",
    container="demo",
    host="127.0.0.1",
    port=6789,
    proxy=True,
    proxy_hash="p" * 64,
    serving="demo-serving",
)


def proxied(name, role, container_hash=C, state="running", id_=None, proxy_hash=""):
    return ContainerState(
        id_ or name,
        name,
        "demo",
        container_hash,
        H,
        state,
        "Up",
        "/repo/demo/package.yaml",
        role,
        1,
        "127.0.0.1",
        proxy_hash=proxy_hash,
    )


PROXY = proxied("demo", "proxy", proxy_hash="p" * 64)
OLD = "d" * 64


def plan_lines(*containers):
    plan = plan_package(PROXIED, Observed(IN_SYNC_FOLDER, [image()], list(containers)))
    return [f"  {a}" for a in plan.actions], plan.actions


def test_behind_the_proxy_in_sync_and_from_nothing():
    assert plan_lines(PROXY, proxied("demo-serving", "backend"))[0] == []
    lines, [action] = plan_lines()
    assert lines == ["  create demo on 127.0.0.1:6789  <- no container"]
    assert isinstance(action.payload, Swap) and not action.payload.reuse and not action.payload.proxy


def test_an_update_creates_beside_the_serving_container_and_retires_it():
    lines, [action] = plan_lines(PROXY, proxied("demo-serving", "backend", OLD, id_="old"))
    assert lines == ["  recreate demo on 127.0.0.1:6789  <- container settings changed"]
    swap = action.payload
    assert (swap.current, swap.reuse, swap.proxy, swap.retire) == ("old", "", "demo", ())


def test_killed_after_the_new_container_started_it_is_used_not_started_again():
    lines, [action] = plan_lines(
        PROXY, proxied("demo-serving", "backend", OLD, id_="old"), proxied("demo-bbbbbbbb-1a2b", "backend", id_="new")
    )
    assert lines == ["  recreate demo on 127.0.0.1:6789  <- container settings changed"]
    assert (action.payload.current, action.payload.reuse) == ("old", "new")


def test_killed_after_the_old_one_gave_up_the_name():
    lines, [action] = plan_lines(
        PROXY,
        proxied("demo-retiring-1", "backend", OLD, id_="old"),
        proxied("demo-bbbbbbbb-1a2b", "backend", id_="new"),
    )
    assert lines == ["  create demo on 127.0.0.1:6789  <- an interrupted update"]
    assert (action.payload.current, action.payload.reuse, action.payload.retire) == ("", "new", ("old",))


def test_killed_after_the_new_one_took_the_name_the_old_one_is_drained():
    lines, _ = plan_lines(PROXY, proxied("demo-serving", "backend"), proxied("demo-retiring-1", "backend", OLD))
    assert lines == ["  remove container demo-retiring-1  <- left by an interrupted update"]


def test_a_stopped_proxy_or_serving_container_is_started_and_new_proxy_settings_recreate_the_proxy():
    serving = proxied("demo-serving", "backend")
    assert plan_lines(proxied("demo", "proxy", state="exited", proxy_hash="p" * 64), serving)[0] == [
        "  start proxy demo on 127.0.0.1:6789  <- proxy exited"
    ]
    assert plan_lines(PROXY, proxied("demo-serving", "backend", state="exited"))[0] == [
        "  start demo on 127.0.0.1:6789  <- container exited"
    ]
    assert plan_lines(proxied("demo", "proxy", proxy_hash="q" * 64), serving)[0] == [
        "  recreate proxy demo on 127.0.0.1:6789  <- proxy settings changed (was on 127.0.0.1:1)"
    ]


def test_a_container_that_published_the_port_itself_goes_once_the_new_one_is_ready():
    lines, [action] = plan_lines(proxied("demo", "", OLD, id_="direct"))
    assert lines == ["  create demo on 127.0.0.1:6789  <- no container"]
    assert action.payload.clear == ("direct",) and action.payload.proxy == ""


def test_a_rollback_holds_the_package_while_its_inputs_are_those_it_was_rolled_back_from():
    from dataclasses import replace

    from reconciler.plan.rollback import plan_rollback

    old = "e" * 64
    observed = Observed(IN_SYNC_FOLDER, [image(), image(old, id_="sha256:" + "2" * 64)], [container()])
    actions, error = plan_rollback(CONTAINER, observed, old, "f" * 64)
    assert error is None
    assert "\n".join(line(a) for a in actions) == "  recreate demo on 127.0.0.1:6789  <- rollback to eeeeeeeeeeee"
    [recreate] = actions
    assert recreate.payload.spec.image == "demo:eeeeeeeeeeee"
    assert recreate.payload.spec.labels["reconciler.hold"] == C  # held at the inputs of now
    rolled = replace(container("f" * 64, old), hold=C)
    held = plan_package(CONTAINER, Observed(IN_SYNC_FOLDER, [image(), image(old)], [rolled]))
    assert held.actions == [] and held.notes == [
        "rolled back to eeeeeeeeeeee (no commit recorded); held until the inputs change "
        "(reconciler rollback --release deploys them again)"
    ]
    stopped = replace(rolled, state="exited")  # what serves is still healed
    assert [line(a) for a in plan_package(CONTAINER, Observed(IN_SYNC_FOLDER, [image()], [stopped])).actions] == [
        "  start demo on 127.0.0.1:6789  <- container exited: what the rollback put there is kept serving"
    ]
    released = plan_package(CONTAINER, Observed(IN_SYNC_FOLDER, [image()], [rolled]), release=True)
    assert [a.kind.value for a in released.actions] == ["recreate"]
    moved = replace(CONTAINER, container_hash="9" * 64)  # the inputs changed: the hold no longer applies
    assert [a.kind.value for a in plan_package(moved, Observed(IN_SYNC_FOLDER, [image()], [rolled])).actions] == [
        "recreate"
    ]
