"""Loading manifests: every problem reported at once, with file, line, column and field."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from reconciler.core.errors import InvalidInput
from reconciler.spec.discovery import load_workspace
from reconciler.spec.package import load_package

from .conftest import write_package


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_package(path)
    return [f"{p.line}:{p.column}: {p.field}: {p.message}" for p in caught.value.problems]


def test_minimal_manifest_gets_sensible_defaults(repo):
    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models:
          - {name: m, version: 1, path: model/model.txt}
        """,
    )
    package = load_package(manifest)
    environment = package.manifest.inference.environment
    assert environment.resolved_base_image == "python:3.11-slim"
    assert package.manifest.output.mode == "dockerfile"
    assert package.output_directory == repo / "pkg" / "build" / "pkg"
    assert package.entry_script == repo / "pkg" / "score.py"
    assert package.manifest.output.container.port == 6789
    assert package.manifest.output.container.host == "127.0.0.1"


def test_all_errors_of_a_file_at_once_with_positions(repo):
    manifest = write_package(
        repo / "pkg",
        """\
        name: Bad_Name
        models:
          - name: m
            version: "1"
            path: model/model.txt
            colour: red
        inference:
          environment:
            python: 3.10
            system_pakages: []
        output:
          mode: cont
          container: {port: 99999}
        """,
    )
    assert problems_of(manifest) == [
        "1:7: name: 'Bad_Name' is not valid: use 1-63 lowercase letters, digits and '-', "
        "starting and ending with a letter or digit",
        "4:14: models[0].version: must be a valid integer, got '1'",
        "6:5: models[0].colour: unknown field 'colour'; allowed here: name, version, path, type",
        "9:13: inference.environment.python: must be a string; YAML read the unquoted value "
        "as the number 3.1, so put it in quotes",
        "10:5: inference.environment.system_pakages: unknown field 'system_pakages'; did you mean 'system_packages'?",
        "12:9: output.mode: must be 'dockerfile', 'image', 'container' or 'kubernetes', got 'cont'",
        "13:21: output.container.port: must be less than or equal to 65535, got 99999",
    ]


def test_problem_renders_as_file_line_column_field(repo, monkeypatch):
    manifest = write_package(repo / "pkg", "name: x\nmodels: []\n")
    monkeypatch.chdir(repo)
    with pytest.raises(InvalidInput) as caught:
        load_package(manifest)
    assert (
        str(caught.value.problems[0])
        == "pkg/package.yaml:2:9: models: must have at least 1 item after validation, not 0"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: a\nname: b\n", "2:1: name: duplicate key 'name'"),
        ("name: [unclosed\n", "2:1: None: invalid YAML: did not find expected ',' or ']'"),
        ("- a\n- b\n", "1:1: None: a manifest is a mapping of fields (name, models, ...); this file is a list"),
        ("", "1:1: None: a manifest is a mapping of fields (name, models, ...); this file is empty"),
        (
            "name: !!python/object:os.system x\n",
            "1:7: name: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
        ("1: x\n", "1:1: None: mapping key 1 must be a string (quote it)"),
        ("a: !!int abc\n", "1:4: a: cannot read 'abc' as tag:yaml.org,2002:int"),
    ],
)
def test_yaml_problems_are_positioned(repo, text, expected):
    (repo / "package.yaml").write_text(text)
    assert problems_of(repo / "package.yaml") == [expected]


def test_anchor_bomb_is_refused_quickly(repo):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 10):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    (repo / "package.yaml").write_text("\n".join(lines) + "\n")
    [problem] = problems_of(repo / "package.yaml")
    assert "alias/anchor bomb" in problem


def test_oversized_manifest_is_refused(repo):
    (repo / "package.yaml").write_text("description: '" + "x" * 300_000 + "'\n")
    [problem] = problems_of(repo / "package.yaml")
    assert "manifests are limited to 262144 bytes" in problem


def test_not_utf8_is_a_clear_error(repo):
    (repo / "package.yaml").write_bytes(b"name: \xff\xfe\n")
    [problem] = problems_of(repo / "package.yaml")
    assert "not UTF-8" in problem


def test_model_validators_report_at_the_enclosing_field(repo):
    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models:
          - {name: m, version: 1, path: model/model.txt}
          - {name: m, version: 1, path: model/model.txt}
        inference:
          environment:
            requirements: requirements.txt
            pip: [numpy]
        output:
          image: {push: true}
        """,
    )
    assert problems_of(manifest) == [
        "3:3: models: model m version 1 is listed twice",
        "7:5: inference.environment: set one of `requirements` (a file), `pip` (a list) or `conda_file`, "
        "not requirements and pip",
        "10:10: output.image: `push: true` needs `registry: HOST:PORT`",
    ]


def test_reserved_and_malformed_variables(repo):
    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models: [{name: m, version: 1, path: model/model.txt}]
        inference:
          environment:
            variables: {"bad key": x, MULTI: "a\\nb", LIST: [1], GOOD: 3}
        """,
    )
    assert problems_of(manifest) == [
        "5:17: inference.environment.variables.bad key: key 'bad key' is not valid: "
        "use letters, digits and '_', not starting with a digit",
        "5:38: inference.environment.variables.MULTI: 'a\\nb' is not valid: values must fit on one line",
        "5:52: inference.environment.variables.LIST: must be a string, number or boolean, got [1]",
    ]
    manifest.write_text(
        manifest.read_text().replace('{"bad key": x, MULTI: "a\\nb", LIST: [1], GOOD: 3}', "{AZUREML_MODEL_DIR: /x}")
    )
    assert problems_of(manifest) == [
        "5:16: inference.environment.variables: AZUREML_MODEL_DIR is set by reconciler and cannot be overridden"
    ]


def test_pip_requirements_cannot_smuggle_options(repo):
    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models: [{name: m, version: 1, path: model/model.txt}]
        inference:
          environment:
            pip: ["--index-url=http://evil", "numpy==", "ok-package>=1"]
        """,
    )
    problems = problems_of(manifest)
    assert problems == [
        "5:11: inference.environment.pip[0]: '--index-url=http://evil' is not valid: "
        "use a requirement such as scikit-learn==1.5.2 (no pip options)",
        "5:38: inference.environment.pip[1]: not a valid requirement: "
        "Expected semicolon (after name with no version specifier) or end",
    ]


def test_paths_must_exist_and_stay_inside_the_repository(repo, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.pkl").write_text("x")
    package = repo / "pkg"
    write_package(
        package,
        f"""\
        name: pkg
        models:
          - {{name: a, version: 1, path: missing.pkl}}
          - {{name: b, version: 1, path: ../../{outside.name}/secret.pkl}}
          - {{name: c, version: 1, path: link.pkl}}
        inference:
          source_directory: src
          environment: {{requirements: reqs.txt}}
        output: {{directory: ../..}}
        """,
    )
    os.symlink(outside / "secret.pkl", package / "link.pkl")
    problems = problems_of(package / "package.yaml")
    text = "\n".join(problems)
    assert "models[0].path" in text and "missing.pkl does not exist" in text
    assert "models[1].path" in text and "is outside the repository" in text
    assert "models[2].path" in text and "is a symlink to" in text and "outside the repository" in text
    assert "inference.source_directory" in text and "src does not exist" in text
    assert "inference.environment.requirements" in text and "reqs.txt does not exist" in text
    assert "output.directory" in text and "is outside the repository" in text


def test_output_directory_may_not_contain_the_inputs(repo):
    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models: [{name: m, version: 1, path: model/model.txt}]
        output: {directory: .}
        """,
    )
    [problem] = problems_of(manifest)
    assert problem.startswith("3:21: output.directory: the build folder would contain the package's own input")


@pytest.mark.parametrize(
    "score, message",
    [
        ("def init():\n    pass\n", "defines no run(); an entry script needs init() and run(raw_data)"),
        ("x = 1\n", "defines no init() and run(); an entry script needs init() and run(raw_data)"),
    ],
)
def test_entry_script_must_define_init_and_run(repo, score, message):
    manifest = write_package(repo / "pkg", score=score)
    [problem] = problems_of(manifest)
    assert message in problem and "inference.entry_script" in problem


def test_entry_script_forms_azure_accepts(repo):
    score = textwrap.dedent("""\
        from helpers import run
        try:
            import fast as init
        except ImportError:
            def init():
                pass
        """)
    load_package(write_package(repo / "pkg", score=score))


def test_star_import_may_define_init_and_run(repo):
    load_package(write_package(repo / "pkg", score="from scoring import *\n"))


def test_entry_script_syntax_error_points_into_the_script(repo):
    manifest = write_package(repo / "pkg", score="def init():\n    pass\ndef run(x)\n    return x\n")
    with pytest.raises(InvalidInput) as caught:
        load_package(manifest)
    [problem] = caught.value.problems
    assert problem.file.endswith("score.py") and problem.line == 3 and "syntax error" in problem.message


def test_one_bad_manifest_does_not_hide_the_others(repo):
    write_package(repo / "good", name="good")
    write_package(repo / "bad", "name: bad\nmodels: nope\n")
    workspace = load_workspace([repo])
    assert [p.name for p in workspace.packages] == ["good"]
    assert [p.field for p in workspace.problems] == ["models"]
    assert workspace.manifests_found == 2 and not workspace.complete


def test_two_packages_with_one_name_are_both_named(repo):
    write_package(repo / "one", name="same")
    write_package(repo / "two", name="same")
    workspace = load_workspace([repo])
    assert workspace.packages == []
    messages = sorted(str(p) for p in workspace.problems)
    assert "one/package.yaml" in messages[0] and "is also used by" in messages[0] and "two/package.yaml" in messages[0]
    assert "two/package.yaml" in messages[1] and "one/package.yaml" in messages[1].split("used by")[1]


def test_container_ports_must_not_collide(repo):
    for name in ("one", "two"):
        write_package(
            repo / name,
            f"""\
            name: {name}
            models: [{{name: m, version: 1, path: model/model.txt}}]
            output: {{mode: container}}
            """,
        )
    workspace = load_workspace([repo])
    assert workspace.packages == []
    assert all("port '6789' is also used by" in p.message for p in workspace.problems)


def test_discovery_skips_hidden_folders_and_outputs(repo):
    write_package(repo / "pkg", name="pkg")
    write_package(repo / ".hidden" / "pkg", name="hidden")
    (repo / "pkg" / "build" / "pkg").mkdir(parents=True)
    (repo / "pkg" / "build" / "pkg" / ".reconciler-stamp.json").write_text("{}")
    (repo / "pkg" / "build" / "pkg" / "package.yaml").write_text("name: copy\n")
    workspace = load_workspace([repo])
    assert [p.name for p in workspace.packages] == ["pkg"]


def test_missing_path_argument_is_a_problem(repo):
    workspace = load_workspace([repo / "nope"])
    assert [p.message for p in workspace.problems] == ["no such file or folder"]


def test_canary_settings_are_checked_with_file_line_and_field(repo):
    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models:
          - {name: m, version: 1, path: model/model.txt}
        output:
          mode: container
          container:
            canary:
              weight: 100
              duration_s: 0
              max_error_rate: 1.5
        """,
    )
    assert problems_of(manifest) == [
        "8:15: output.container.canary.weight: must be less than or equal to 99, got 100",
        "9:19: output.container.canary.duration_s: must be greater than 0, got 0",
        "10:23: output.container.canary.max_error_rate: must be less than or equal to 1, got 1.5",
    ]


@pytest.mark.parametrize(
    "output, expected",
    [
        (
            "{mode: container, container: {proxy: false, canary: {weight: 10, duration_s: 60, max_error_rate: 0}}}",
            "4:38: output.container: canary needs proxy: true: the proxy is what splits the traffic and counts "
            "the errors",
        ),
        (
            "{mode: kubernetes, image: {registry: 'r.example:5000'}, "
            "container: {canary: {weight: 10, duration_s: 60, max_error_rate: 0}}}",
            "4:9: output: container.canary is for container mode; on Kubernetes, Argo Rollouts or Flagger run "
            "canaries (docs/kubernetes.md, section Canary)",
        ),
    ],
)
def test_a_canary_needs_the_proxy_and_container_mode(repo, output, expected):
    manifest = write_package(
        repo / "pkg",
        f"""\
        name: pkg
        models:
          - {{name: m, version: 1, path: model/model.txt}}
        output: {output}
        """,
    )
    assert problems_of(manifest) == [expected]


@pytest.mark.parametrize(
    "directory, message",
    [
        ("/var/lib/collected", "inference.data_collection.directory: '/var/lib/collected' is not valid"),
        ("../elsewhere", "elsewhere is not a folder inside "),
        ("model", "/pkg/model would hold the package's inputs or outputs"),
    ],
)
def test_a_data_collection_folder_stays_inside_the_package_and_holds_no_input(repo, directory, message):
    manifest = write_package(
        repo / "pkg",
        f"""\
        name: pkg
        models:
          - {{name: m, version: 1, path: model/model.txt}}
        inference:
          data_collection: {{directory: "{directory}"}}
        """,
    )
    [problem] = problems_of(manifest)
    assert problem.startswith("5:") and "inference.data_collection.directory: " in problem and message in problem, (
        problem
    )


def test_a_data_collection_folder_may_not_leave_through_a_symlink(repo, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models:
          - {name: m, version: 1, path: model/model.txt}
        inference:
          data_collection: {directory: collected}
        """,
    )
    (manifest.parent / "collected").symlink_to(outside)
    [problem] = problems_of(manifest)
    assert "inference.data_collection.directory: " in problem and "(through a symlink)" in problem
