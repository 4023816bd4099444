"""The engine is a library: importing it pulls in none of the service's frameworks."""
import subprocess
import sys


def test_import_mlp_loads_no_web_or_queue_frameworks():
    code = ("import mlp, sys; bad = [m for m in ('flask', 'celery', 'sqlalchemy', 'pydantic') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_package_imports_only_numpy_and_stdlib():
    code = ("import sys; before = set(sys.modules); import mlp; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "allowed = set(sys.stdlib_module_names) | {'numpy', 'mlp'}; "
            "print(','.join(sorted(new - allowed)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
