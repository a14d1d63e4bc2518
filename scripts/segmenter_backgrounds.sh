#!/usr/bin/env bash
# Build the foreground segmenter's two background image packs (docs/segmenter.md, "Data"):
#
#   scripts/segmenter_backgrounds.sh [OUT]        # default OUT: .data/bg (in the repository)
#
#   OUT/train    1,014 JPEG crops (192 px or less), 11 MB on disk: read by training (--backgrounds)
#   OUT/heldout  212 JPEG crops, 2.4 MB, never read by training (--heldout-backgrounds, evaluation only)
#
# Each pack holds SOURCES.txt (one line per source: crops, images, where from). Both folders are rebuilt
# from scratch; the same packages, Pillow and numpy give the same crops (every choice is seeded).
# Debian 12 packages it reads (installed here when one is missing; with SKIP_APT=1 it fails instead):
#
#   apt-get install -y --no-install-recommends mate-backgrounds gnome-backgrounds mypaint-data-extras lomiri-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 ukui-wallpapers extremetuxracer-data 0ad-data ufoai-data minetest-data
#
# train:   mate-backgrounds, gnome-backgrounds, mypaint-data-extras (paper textures), lomiri-wallpapers (its own
#          2 images; it depends on the two below, whose images are held out), and textures of the corpus's
#          train-split packages 0ad-data (terrain and skin DDS), ufoai-data (pictures, model skins),
#          minetest-data (minetest_game textures).
# heldout: ukui-wallpapers, lomiri-wallpapers-16.04, lomiri-wallpapers-20.04, extremetuxracer-data textures
#          (terrains, sky boxes): a game the corpus does not use.
# Left out of both: the five photos of the photo test (docs/segmenter.md), normal/specular/AO/glow/player-colour
# maps (not colour images), UI icons. Never used: reserved sources and the corpus's test/val packages.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/.data/bg}")
PYTHON=${PYTHON:-python}
cd "$ROOT"

PACKAGES=(mate-backgrounds gnome-backgrounds mypaint-data-extras lomiri-wallpapers lomiri-wallpapers-16.04
          lomiri-wallpapers-20.04 ukui-wallpapers extremetuxracer-data 0ad-data ufoai-data minetest-data)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})) && [[ ${SKIP_APT:-0} != 1 ]]; then
    SUDO=(); [[ $(id -u) == 0 ]] || SUDO=(sudo)
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends "${PACKAGES[@]}"
elif ((${#missing[@]})); then
    echo "missing Debian packages: ${missing[*]}" >&2
    exit 1
fi

# Left out of every pack (file names): the photos of the photo test (lomiri-wallpapers-16.04).
EXCLUDE=(Picture_0B_by_freespace.jpg Picture_1A_by_freespace.jpg Wine_by_Jakkub_Mede.jpg
        free_by_Peter_Nerlich.jpg friends_by_Aitzol_Berasategi.jpg)

pkg_images() {  # PACKAGE: the package's own image files (several share /usr/share/backgrounds), less EXCLUDE
    dpkg -L "$1" | grep -iE '\.(png|jpe?g|webp)$' | grep -vFf <(printf '/%s\n' "${EXCLUDE[@]}") | LC_ALL=C sort
}

# 0ad-data and ufoai-data keep their files in zip archives: a seeded sample of members is staged here
# (and noted in train/SOURCES.txt).
STAGE="$OUT/.staging"
trap 'rm -rf "$STAGE"' EXIT
extract() {  # ZIP DEST INCLUDE_RE EXCLUDE_RE COUNT: COUNT members (seeded sample) matching INCLUDE_RE, not EXCLUDE_RE
    "$PYTHON" - "$@" <<'PY'
import random, re, sys, zipfile
from pathlib import Path
archive, dest, include, exclude, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
with zipfile.ZipFile(archive) as z:
    names = sorted(n for n in z.namelist() if re.search(include, n) and not re.search(exclude, n.rsplit("/", 1)[-1]))
    picked = sorted(random.Random(0).sample(names, min(count, len(names))))
    for name in picked:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(z.read(name))
print(f"(staged) {len(picked)} of the {len(names)} members of {archive} matching {include} (not {exclude})")
PY
}

rm -rf "$OUT/train" "$OUT/heldout" "$STAGE"
mkdir -p "$OUT/train" "$OUT/heldout" "$STAGE"
ZAD=/usr/share/games/0ad/mods/public/public.zip
UFO=/usr/share/games/ufoai/base
{
    extract "$ZAD" "$STAGE/0ad-data" '^art/textures/terrain/.*\.dds$' '_(norm|spec|ao)\.' 180
    extract "$ZAD" "$STAGE/0ad-data" '^art/textures/skins/.*\.dds$' '_(norm|spec|ao|player)\.' 200
    extract "$UFO/0pics.pk3" "$STAGE/ufoai-data" '^pics/(background|maps|techs|base|tutorial)/.*\.(png|jpg)$' '^$' 120
    extract "$UFO/0models.pk3" "$STAGE/ufoai-data" '^models/.*\.(png|jpg)$' '_(gm|nm|sm|clip)\.' 150
} | tee -a "$OUT/train/SOURCES.txt"

pack() { "$PYTHON" scripts/train_segmenter.py pack --size 192 "$@" --exclude "${EXCLUDE[@]}"; }

# --- train ---------------------------------------------------------------------------------------------
T="$OUT/train"
mapfile -t files < <(pkg_images mate-backgrounds)
pack --roots "${files[@]}" --out "$T" --prefix mate_ --crops-per-image 4
mapfile -t files < <(pkg_images gnome-backgrounds)
pack --roots "${files[@]}" --out "$T" --prefix gnome_ --crops-per-image 4
mapfile -t files < <(pkg_images mypaint-data-extras)
pack --roots "${files[@]}" --out "$T" --prefix mypaint_ --crops-per-image 4
mapfile -t files < <(pkg_images lomiri-wallpapers)
pack --roots "${files[@]}" --out "$T" --prefix lomiri_ --crops-per-image 4
pack --roots "$STAGE/0ad-data/art/textures/terrain" --out "$T" --prefix 0ad_terrain_
pack --roots "$STAGE/0ad-data/art/textures/skins" --out "$T" --prefix 0ad_skin_
pack --roots "$STAGE/ufoai-data/pics" --out "$T" --prefix ufoai_pics_
pack --roots "$STAGE/ufoai-data/models" --out "$T" --prefix ufoai_skin_
pack --roots /usr/share/games/minetest/games/minetest_game/mods --out "$T" --prefix minetest_ --max-images 130 --min-side 16

# --- heldout (evaluation only) -------------------------------------------------------------------------
H="$OUT/heldout"
mapfile -t files < <(pkg_images ukui-wallpapers)
pack --roots "${files[@]}" --out "$H" --prefix ukui_ --crops-per-image 4
mapfile -t files < <(pkg_images lomiri-wallpapers-16.04; pkg_images lomiri-wallpapers-20.04)
pack --roots "${files[@]}" --out "$H" --prefix lomiri1620_ --crops-per-image 4
pack --roots /usr/share/games/etr/terrains --out "$H" --prefix etr_terrain_ --crops-per-image 2
EXCLUDE+=(frontH.png leftH.png rightH.png)  # sky boxes: the larger copies of front/left/right.png
pack --roots /usr/share/games/etr/env --out "$H" --prefix etr_sky_

for d in "$T" "$H"; do
    echo "$d: $(find "$d" -name '*.jpg' | wc -l) crops, $(du -sh "$d" | cut -f1)"
done
