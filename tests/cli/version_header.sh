#!/usr/bin/env bash
# cmake/write_version.cmake, which the build runs every time (target moetron_version): the
# header records the checkout's commit as of the build, follows a new commit without a new
# cmake configure, and is left untouched (same mtime, nothing recompiled) when the commit is
# the same.
set -euo pipefail
src=${MOETRON_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v git >/dev/null || { echo "version_header.sh: no git; skipping"; exit 77; }
work=$(mktemp -d /tmp/moetron-version.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "version_header.sh: $*" >&2; exit 1; }

repo=$work/repo header=$work/generated/moetron/version.hpp
git init -q "$repo"
commit() { git -C "$repo" -c user.name=t -c user.email=t@t commit -q --allow-empty -m "$1"; }
write() {
  cmake -DSOURCE_DIR="$repo" -DTEMPLATE="$src/include/moetron/version.hpp.in" \
        -DOUTPUT="$header" -DPROJECT_VERSION=9.8.7 -P "$src/cmake/write_version.cmake"
}

commit first
write
first=$(git -C "$repo" rev-parse --short=12 HEAD)
grep -q "kGitCommit = \"$first\"" "$header" || { cat "$header"; fail "first commit not recorded"; }
grep -q 'kVersion = "9.8.7"' "$header" || fail "version not recorded"

before=$(stat -c %Y.%N "$header" 2>/dev/null || stat -c %Y "$header")
sleep 1.1
write
[ "$(stat -c %Y.%N "$header" 2>/dev/null || stat -c %Y "$header")" = "$before" ] ||
  fail "the header was rewritten although the commit did not change"

commit second
write
second=$(git -C "$repo" rev-parse --short=12 HEAD)
[ "$second" != "$first" ] || fail "the test's two commits have the same id"
grep -q "kGitCommit = \"$second\"" "$header" || { cat "$header"; fail "new commit not recorded"; }

# Outside a git checkout the commit is "unknown", not an error.
rm -rf "$repo/.git"
write
grep -q 'kGitCommit = "unknown"' "$header" || fail "no 'unknown' outside a checkout"

echo "version_header.sh: ok"
