"""In-process checks of the instrumentation's pure pieces: which frames count as application
code (include/exclude prefixes), cache-key normalisation and the parameter hash."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from tracehound.instrumentation.caching import normalise_key
from tracehound.instrumentation.codeloc import CodeLocator
from tracehound.instrumentation.sqla import params_hash

HERE = str(Path(__file__).resolve())


def _call_from(path: str, fn):
    """Call ``fn`` from a frame whose file name is ``path`` (as if that file called it)."""
    namespace: dict = {}
    exec(compile("def call(fn):\n    return fn()\n", path, "exec"), namespace)
    return namespace["call"](fn)


def test_default_rules_skip_libraries_and_find_this_test():
    locator = CodeLocator(include=(), exclude=())
    assert locator.is_app_file(HERE)
    assert not locator.is_app_file(os.__file__)  # standard library
    import flask
    import sqlalchemy

    assert not locator.is_app_file(sqlalchemy.__file__)
    assert not locator.is_app_file(flask.__file__)
    assert not locator.is_app_file("/srv/app/.venv/lib/python3.11/site-packages/lib/x.py")
    assert not locator.is_app_file("<frozen importlib._bootstrap>")
    lib_file = os.path.join(os.path.dirname(os.__file__), "somelib.py")
    path, line, function, module = _call_from(lib_file, lambda: locator.find(depth=0))
    assert (path, function, module) == (
        HERE,
        "test_default_rules_skip_libraries_and_find_this_test.<locals>.<lambda>",
        __name__,
    )
    assert line > 0
    attrs = _call_from(lib_file, lambda: locator.attributes(depth=0))
    assert attrs["code.function"] == "<lambda>"
    assert (
        attrs["code.namespace"] == f"{__name__}.test_default_rules_skip_libraries_and_find_this_test.<locals>"
    )
    assert attrs["code.function.name"] == f"{attrs['code.namespace']}.<lambda>"
    assert (attrs["code.filepath"], attrs["code.lineno"]) == (
        attrs["code.file.path"],
        attrs["code.line.number"],
    )


def test_code_attributes_of_a_module_level_function():
    from tracehound.instrumentation.codeloc import code_attributes

    attrs = code_attributes("/srv/app/app.py", 12, "index", "__main__")
    assert attrs["code.function"] == "index"
    assert attrs["code.namespace"] == "__main__"
    assert attrs["code.function.name"] == "__main__.index"


def test_exclude_and_include_prefixes(tmp_path):
    helper = str(tmp_path / "helpers" / "db.py")
    locator = CodeLocator(include=(), exclude=(str(tmp_path / "helpers"),))
    assert not locator.is_app_file(helper)
    found = _call_from(helper, functools.partial(locator.find, 0))
    assert found[0] == HERE  # the excluded helper frame is skipped

    only = CodeLocator(include=(str(tmp_path / "helpers"),), exclude=())
    assert only.is_app_file(helper)
    assert not only.is_app_file(HERE)  # with an include list, only those prefixes count
    assert _call_from(helper, functools.partial(only.find, 0))[0] == helper


def test_prefixes_from_environment(tmp_path):
    code = (
        "from tracehound.instrumentation.codeloc import CodeLocator\n"
        "l = CodeLocator()\n"
        f"print(l.is_app_file({str(tmp_path / 'a' / 'x.py')!r}), l.is_app_file({str(tmp_path / 'b' / 'y.py')!r}))\n"
    )
    env = {**os.environ, "TRACEHOUND_CODE_EXCLUDE": str(tmp_path / "b"), "TRACEHOUND_CODE_INCLUDE": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
    env["TRACEHOUND_CODE_INCLUDE"] = f"{tmp_path / 'b'},{tmp_path / 'c'}"
    env["TRACEHOUND_CODE_EXCLUDE"] = ""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_normalise_key_removes_user_data():
    assert normalise_key("book:42") == "book:{n}"
    assert normalise_key(b"user:7:cart:13") == "user:{n}:cart:{n}"
    assert normalise_key("session:3f2b8c1e-9a4d-4b6e-8f00-1234567890ab") == "session:{uuid}"
    assert normalise_key("view//books/12") == "view//books/{n}"
    assert normalise_key("token:AbCdEf0123456789xyz") == "token:{hash}"
    assert normalise_key("menu") == "menu"


def test_params_hash_compares_parameters_not_values():
    assert params_hash((1, "a")) == params_hash((1, "a"))
    assert params_hash((1, "a")) != params_hash((2, "a"))
    digest = params_hash({"email": "alice@example.com"})
    assert len(digest) == 16 and "alice" not in digest
    # salted per process unless TRACEHOUND_PARAMS_SALT fixes it
    code = "from tracehound.instrumentation.sqla import params_hash; print(params_hash((1,)))"
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] != runs[1]
    env = {**os.environ, "TRACEHOUND_PARAMS_SALT": "s3cret"}
    fixed = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert fixed[0] == fixed[1]


def test_normalise_key_replaces_free_text_segments():
    # e-mails, names, URL-encoded text and mixed letters+digits never leave the process
    assert normalise_key("user:alice@example.com:profile") == "user:{s}:profile"
    assert normalise_key("author:Ann Lee:books") == "author:{s}:books"
    assert normalise_key("author:Ann%20Lee") == "author:{s}"
    assert normalise_key("greeting:Bonjour") == "greeting:{s}"
    assert normalise_key("order:ab12cd:lines") == "order:{s}:lines"
    # every query-string value is replaced, parameter names stay
    assert normalise_key("view//books?author=Ann%20Lee&page=2") == "view//books?author={v}&page={v}"
    assert normalise_key("search?q=alice@example.com") == "search?q={v}"
    assert normalise_key("filter:owner=bob") == "filter:owner={v}"
    # numbers inside an identifier segment become placeholders, the words stay
    assert normalise_key("book-42:cover") == "book-{n}:cover"
    assert normalise_key("TOP_BOOKS") == "TOP_BOOKS"


def test_normalise_key_keeps_the_demo_keys_readable():
    assert normalise_key("book:17") == "book:{n}"
    assert normalise_key("home:featured") == "home:featured"
    assert normalise_key("rec:user:7") == "rec:user:{n}"
    assert normalise_key("recs:user:7") == "recs:user:{n}"
    assert normalise_key("price:12") == "price:{n}"
    assert normalise_key("bestsellers") == "bestsellers"
    assert normalise_key("view//api/books/3") == "view//api/books/{n}"
    assert normalise_key("flask_cache_view//books") == "flask_cache_view//books"
    # already normalised keys are stable
    assert normalise_key("book:{n}") == "book:{n}"
    assert normalise_key(normalise_key("user:alice@example.com")) == "user:{s}"


def test_include_prefix_with_a_venv_inside_the_project():
    """TRACEHOUND_CODE_INCLUDE=/srv/app with the venv at /srv/app/.venv: the venv's libraries
    are still not application code (the longest matching prefix decides)."""
    site = "/srv/app/.venv/lib/python3.12/site-packages"
    locator = CodeLocator(include=("/srv/app",), exclude=())
    assert locator.is_app_file("/srv/app/shop/views.py")
    assert not locator.is_app_file(f"{site}/sqlalchemy/orm/query.py")
    assert not locator.is_app_file(f"{site}/flask/app.py")
    assert not locator.is_app_file("/srv/other/x.py")  # not included
    # a longer include prefix names a library on purpose: it counts
    named = CodeLocator(include=("/srv/app", f"{site}/mylib"), exclude=())
    assert named.is_app_file(f"{site}/mylib/db.py")
    assert not named.is_app_file(f"{site}/sqlalchemy/orm/query.py")
    # a user exclude inside an include, and an include inside that exclude
    nested = CodeLocator(include=("/srv/app", "/srv/app/gen/keep"), exclude=("/srv/app/gen",))
    assert not nested.is_app_file("/srv/app/gen/models.py")
    assert nested.is_app_file("/srv/app/gen/keep/models.py")
    assert nested.is_app_file("/srv/app/views.py")
    # the real interpreter's libraries stay excluded under an include of "/"
    import sqlalchemy

    everything = CodeLocator(include=("/",), exclude=())
    assert not everything.is_app_file(sqlalchemy.__file__)
    assert not everything.is_app_file(os.__file__)
    assert everything.is_app_file(HERE)


def test_main_script_functions_are_named_after_the_file(tmp_path):
    """``python app.py`` runs the app as ``__main__``; code.function.name says ``app.view``, as
    under ``flask --app app run``."""
    script = tmp_path / "app.py"
    script.write_text(
        "from tracehound.instrumentation.codeloc import CodeLocator\n"
        "def view():\n"
        "    return CodeLocator(include=(), exclude=()).attributes(depth=0)\n"
        "a = view()\n"
        "print(a['code.function.name'], a['code.namespace'], a['code.function'])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["app.view", "app", "view"]
