#!/bin/bash
# The .deb as a user gets it: built by CPack, unpacked into a scratch root (dpkg -x), and run
# from there, away from the build tree: `cytosae --version`, `cytosae embed` with the
# installed demo model, `cytosae demo` finding that model by itself, the explorer's
# --version. Also checks the package's dependencies, files, man page and desktop entry.
#   test_package.sh BUILD_DIR SOURCE_DIR VERSION
set -euo pipefail
build=$1
src=$2
version=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/out/cytosae-explorer_"$version"_*.deb) || fail "no .deb in $(ls "$work/out")"
echo "package: $(basename "$deb"), $(du -k "$deb" | cut -f1) kB"

# Dependencies are declared, not bundled.
depends=$(dpkg-deb --field "$deb" Depends)
echo "Depends: $depends"
for dep in libtorch libqt6widgets6 libopencv-core libsqlite3-0 libopenblas0-openmp qt6-qpa-plugins libqcustomplot; do
    grep -q "$dep" <<< "$depends" || fail "Depends lacks $dep"
done
contents=$(dpkg-deb --contents "$deb")
if echo "$contents" | grep -E '\.so(\.|$)'; then fail "the package bundles shared libraries"; fi
for f in usr/bin/cytosae usr/bin/cytosae-explorer usr/share/cytosae/models/demo/demo_vit.pth \
    usr/share/cytosae/models/demo/demo_sae.pt usr/share/applications/cytosae-explorer.desktop \
    usr/share/icons/hicolor/scalable/apps/cytosae-explorer.svg usr/share/mime/packages/cytosae-explorer.xml \
    usr/share/man/man1/cytosae.1.gz usr/share/man/man1/cytosae-explorer.1.gz \
    usr/share/doc/cytosae-explorer/copyright usr/share/doc/cytosae-explorer/examples/slurm/submit-sharded-run.sh; do
    grep -q " \./$f\$" <<< "$contents" || fail "$f is not in the package"
done

root="$work/root"
dpkg -x "$deb" "$root"
bin="$root/usr/bin"
# Nothing may point back into the build tree (no RPATH/RUNPATH to it).
for exe in "$bin/cytosae" "$bin/cytosae-explorer"; do
    if readelf -d "$exe" | grep -E 'RPATH|RUNPATH' | grep -q "$build"; then fail "$exe has a run path into $build"; fi
done

cd "$work" # away from the source and build trees
unset CYTOSAE_MODELS
v=$("$bin/cytosae" --version) || fail "cytosae --version"
grep -qx "cytosae $version" <<< "$v" || fail "cytosae --version says: $v"
grep -q "LibTorch" <<< "$v" || fail "cytosae --version does not say which LibTorch: $v"
QT_QPA_PLATFORM=offscreen "$bin/cytosae-explorer" --version | grep -q "$version" || fail "cytosae-explorer --version"

models="$root/usr/share/cytosae/models/demo"
"$bin/cytosae" embed --vit "$models/demo_vit.pth" --sae "$models/demo_sae.pt" --top 3 --json "$work/out.json" \
    "$src/tests/data/fixtures/images/img1_rgb_144x120.png" >"$work/embed.log" 2>&1 || { cat "$work/embed.log"; fail "embed"; }
grep -q '"concepts"' "$work/out.json" || fail "embed wrote no concepts"
grep -q "on cpu" "$work/embed.log" || fail "embed does not say its device: $(cat "$work/embed.log")"

# `cytosae demo` finds the installed demo model next to the installed binary.
"$bin/cytosae" demo "$work/demo" --patients-per-group 1 --cells 2 --threads 1 >"$work/demo.log" 2>&1 ||
    { cat "$work/demo.log"; fail "demo"; }
vitpath=$(sqlite3 -readonly "$work/demo/demo.cyto" "SELECT path FROM model WHERE kind = 'vit'")
[ "$vitpath" = "$models/demo_vit.pth" ] || fail "demo used $vitpath, not the installed model"

# The man page renders without warnings and lists every command and option the program has.
man=$(zcat "$root/usr/share/man/man1/cytosae.1.gz")
warnings=$(echo "$man" | groff -man -Tutf8 -ww -z 2>&1) || true
[ -z "$warnings" ] || fail "man page warnings: $warnings"
page=$(echo "$man" | groff -man -Tutf8 2>/dev/null | col -b)
commands=$("$bin/cytosae" --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
[ "$(echo "$commands" | wc -l)" -ge 10 ] || fail "could not read the commands from cytosae --help"
for c in $commands; do
    grep -q "^       $c" <<< "$page" || fail "the man page does not describe '$c'"
    for o in $("$bin/cytosae" "$c" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
        grep -q -- "$o" <<< "$page" || fail "the man page lacks option $o of '$c'"
    done
done

# Desktop entry: valid, and its MIME type is the one the package defines for *.cyto.
desktop="$root/usr/share/applications/cytosae-explorer.desktop"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$desktop" || fail "desktop entry"; fi
mime=$(sed -n 's/^MimeType=\([^;]*\);.*/\1/p' "$desktop")
grep -q "type=\"$mime\"" "$root/usr/share/mime/packages/cytosae-explorer.xml" || fail "MIME type $mime not defined"
grep -q 'pattern="\*.cyto"' "$root/usr/share/mime/packages/cytosae-explorer.xml" || fail "no *.cyto glob"
grep -q "^Exec=cytosae-explorer %f" "$desktop" || fail "the entry does not pass the file to the explorer"
echo "package: ok"
