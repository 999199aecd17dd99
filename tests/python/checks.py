"""What the openai-package scripts share: one check that prints its result and stops the script,
with a non-zero exit, at the first failure."""
import sys


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")
