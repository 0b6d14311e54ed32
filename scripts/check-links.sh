#!/usr/bin/env bash
# Every relative link in the repository's Markdown files (README.md, docs/, the other
# READMEs) must name a file or directory of this repository: a fresh clone has nothing
# beside it. Links to other sites are not fetched.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import pathlib, re, subprocess, sys

# Tracked and new (not ignored) files: what a clone has, not node_modules.
listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                        check=True, capture_output=True, text=True).stdout.split()
files = [pathlib.Path(p) for p in listed]
link = re.compile(r"\]\(([^)\s]+)\)")
bad = []
for f in sorted(set(files)):
    text = f.read_text()
    # Code blocks hold shell and TOML, not links.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in link.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        resolved = (f.parent / path).resolve()
        root = pathlib.Path.cwd().resolve()
        tracked = resolved.exists() and root in [resolved, *resolved.parents]
        if not tracked:
            bad.append(f"{f}: {target}")
if bad:
    print("broken or outside links:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
print(f"links: {len(files)} files checked")
PY
