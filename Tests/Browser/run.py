"""Runs the browser tests (Tests/Browser/test_*.py: every function test_*), in file order.

A failing test's browsers are screenshotted (with their console log) into
$AIIM_BROWSER_ARTIFACTS before they close. Prints one line per test and
'browser: N passed, N failed' at the end; exits non-zero when a test failed.
  run.py [-k SUBSTRING]
"""

import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def main(argv):
    pattern = argv[argv.index("-k") + 1] if "-k" in argv else ""
    artifacts = os.environ.get("AIIM_BROWSER_ARTIFACTS", os.path.join(HERE, "artifacts"))
    passed = failed = 0
    for file in sorted(f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py")):
        spec = importlib.util.spec_from_file_location(file[:-3], os.path.join(HERE, file))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name in [n for n in vars(module) if n.startswith("test_") and callable(getattr(module, n))]:
            if pattern not in f"{file}::{name}":
                continue
            browsers = []
            t0 = time.monotonic()
            try:
                getattr(module, name)(browsers)
                passed += 1
                print(f"PASS {file}::{name} ({time.monotonic() - t0:.1f} s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {file}::{name} ({time.monotonic() - t0:.1f} s)\n{traceback.format_exc()}", flush=True)
                for b in browsers:
                    try:
                        b.screenshot(artifacts, name)
                    except Exception as e:
                        print(f"  (no screenshot of {b.name}: {e})")
                print(f"  screenshots: {artifacts}", flush=True)
            finally:
                for b in browsers:
                    try:
                        b.close()
                    except Exception:
                        pass
    print(f"browser: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
