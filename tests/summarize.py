#!/usr/bin/env python3
"""Counts test cases in a meson test log: TAP tests by their ok / not ok lines, other tests as
one case each. Prints 'N passed, N failed[, N skipped]' and writes 'passed failed skipped'."""
import json
import re
import sys


def main() -> int:
    log, out = sys.argv[1], sys.argv[2]
    passed = failed = skipped = 0
    with open(log, encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)
            stdout = t.get("stdout") or ""
            if t.get("protocol") == "tap" or stdout.startswith("TAP version"):
                cases = 0
                for l in stdout.splitlines():
                    if re.match(r"^not ok\b", l):
                        if "# TODO" in l:
                            skipped += 1
                        else:
                            failed += 1
                        cases += 1
                    elif re.match(r"^ok\b", l):
                        if "# SKIP" in l:
                            skipped += 1
                        else:
                            passed += 1
                        cases += 1
                # A binary that crashed before or after its cases still counts as a failure.
                if t.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL") and \
                        not re.search(r"^not ok\b", stdout, re.M):
                    failed += 1
                elif cases == 0 and t.get("result") == "OK":
                    passed += 1
            else:
                r = t.get("result")
                if r == "OK":
                    passed += 1
                elif r == "SKIP":
                    skipped += 1
                else:
                    failed += 1
    with open(out, "w", encoding="utf-8") as f:
        f.write(f"{passed} {failed} {skipped}\n")
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
