#!/usr/bin/env bash
# Install the emoji images with their names (emoji-datasource, MIT; Google and Twitter art, Apache-2.0 and
# CC-BY 4.0) for builtin:emoji and builtin:emoji_twitter, from the npm registry.
# Each set goes to $HFSSL_EMOJI_DIR/<set>/ (default ~/.cache/hfssl/emoji) keeping only emoji.json and
# img/<set>/64/*.png (about 8 MB a set). Idempotent: a set already installed is left alone.
set -euo pipefail
version=16.0.0
target="${HFSSL_EMOJI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hfssl/emoji}"
sets="${*:-google twitter}"
for set in $sets; do
  case "$set" in google|twitter) ;; *) echo "unknown emoji set '$set' (google or twitter)" >&2; exit 2;; esac
  if [ -f "$target/$set/emoji.json" ] && [ -f "$target/$set/.complete" ]; then
    echo "emoji set $set is in $target/$set"; continue
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "prepare_emoji.sh needs npm (Debian: apt-get install -y npm) to fetch emoji-datasource-$set@$version" >&2
    exit 3
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "emoji-datasource-$set@$version" >/dev/null)
  tar -xzf "$work/emoji-datasource-$set-$version.tgz" -C "$work" package/emoji.json "package/img/$set/64"
  mkdir -p "$target"
  rm -rf "$target/$set.tmp" && mkdir -p "$target/$set.tmp/img/$set"
  mv "$work/package/emoji.json" "$target/$set.tmp/"
  mv "$work/package/img/$set/64" "$target/$set.tmp/img/$set/64"
  touch "$target/$set.tmp/.complete"
  rm -rf "$target/$set" && mv "$target/$set.tmp" "$target/$set"
  rm -rf "$work"; trap - EXIT
  echo "emoji set $set installed in $target/$set ($(ls "$target/$set/img/$set/64" | wc -l) images)"
done
if [ -z "${HFSSL_EMOJI_DIR:-}" ]; then echo "(builtin:emoji reads $target; set HFSSL_EMOJI_DIR to use another folder)"; fi
