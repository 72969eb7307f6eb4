#!/bin/sh
# git workload for c_tests/real_programs.sh: git_work.sh DIR
# Creates a repository in DIR (which must not exist yet), makes 200 commits that each change a
# few files, then runs log, diff, blame, grep, gc and fsck. Author, committer, dates and the
# configuration are fixed, so every commit hash is the same from one run to the next, and only
# deterministic facts are printed.
set -eu
dir=$1

# No user or system configuration; a fixed identity and clock.
export HOME="$dir.home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="A U Thor" GIT_AUTHOR_EMAIL=author@example.com
export GIT_COMMITTER_NAME="C O Mitter" GIT_COMMITTER_EMAIL=committer@example.com
export TZ=UTC LC_ALL=C
mkdir -p "$HOME"

git -c init.defaultBranch=main init -q "$dir"
cd "$dir"
git config gc.auto 0
git config maintenance.auto false
git config core.pager cat
git config pack.threads 1

mkdir -p src doc
i=1
while [ "$i" -le 200 ]; do
    export GIT_AUTHOR_DATE="$((1700000000 + i * 60)) +0000" GIT_COMMITTER_DATE="$((1700000000 + i * 60)) +0000"
    # Each commit appends to one growing log, rewrites two of twenty source files and, every
    # tenth commit, adds a document and removes an older one.
    echo "change $i" >> CHANGES
    f=$((i % 20)); g=$(((i * 7) % 20))
    seq "$i" "$((i + 50 + f))" | sed "s/^/line $f /" > "src/file$f.c"
    seq 1 "$((i % 13 + 1))" | sed "s/\$/ rev $i/" > "src/file$g.c"
    if [ $((i % 10)) -eq 0 ]; then
        seq 1 500 | sed "s/^/doc $i: /" > "doc/doc$i.txt"
        [ ! -e "doc/doc$((i - 30)).txt" ] || git rm -q "doc/doc$((i - 30)).txt"
    fi
    git add -A
    git commit -q -m "commit $i: files $f and $g"
    i=$((i + 1))
done

echo "commits: $(git log --oneline | wc -l)"
echo "head: $(git rev-parse HEAD)"
echo "tree: $(git rev-parse 'HEAD^{tree}')"
echo "log -p: $(git log -p | sha256sum | cut -c1-16)"
echo "log --stat: $(git log --stat --format='%H %an %s' | sha256sum | cut -c1-16)"
echo "diff HEAD~150: $(git diff --shortstat HEAD~150 HEAD)"
echo "blame CHANGES: $(git blame -s CHANGES | sha256sum | cut -c1-16)"
echo "grep: $(git grep -c 'rev 1' HEAD~20 -- src | wc -l) files"
echo "show: $(git show HEAD~100:src/file3.c | sha256sum | cut -c1-16)"
echo "rev-list objects: $(git rev-list --objects --all | wc -l)"
git gc -q --aggressive
git count-objects -v | grep -E '^(count|in-pack|packs):'
git fsck --full --strict --no-progress
echo "fsck: ok"
echo "after gc, log -p: $(git log -p | sha256sum | cut -c1-16)"
