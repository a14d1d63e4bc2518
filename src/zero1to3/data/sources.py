"""The corpus's sources: which packages hold real third-party 3D objects, where, and how each is read.

Why a module of its own: what a corpus is made of (package names, folders, up axes, what is left out and why,
the split of every package, the reserved evaluation sources, how pip / npm packages are found) is the part
people read and extend; :mod:`zero1to3.data.corpus` turns it into objects (conversion, near-duplicates,
splits, the manifest) and re-exports these names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["RESERVED_SOURCES", "ReservedSourceError", "Source", "SOURCES", "DEFAULT_SPLITS", "DEFAULT_EXCLUDE",
           "LUGARU_SKINS", "check_not_reserved", "NPM_PREFIX_ENV", "DEFAULT_NPM_PREFIX", "npm_prefix",
           "install_command", "package_root", "located", "registry_licence", "package_version", "package_licence"]

#: Sources reserved for independent evaluation (BRIEF): never built into a corpus. Matched against
#: package names and against every component of a folder source's path.
RESERVED_SOURCES: tuple[str, ...] = ("sweethome3d-furniture", "opencv-doc", "robosuite", "pybullet",
                                     "pybullet_data", "pybullet-data", "pymeshlab", "panda3d", "dm-control",
                                     "dm_control", "scikit-image", "skimage", "scikit-learn", "sklearn")


#: Parts and files that are not objects: terrain, sky, particles, shadows, collision hulls, projectiles.
DEFAULT_EXCLUDE = (r"(^|[/_.-])(terrain|sky|skybox|skydome|particles?|effects?|decals?|shadows?|collision|"
                   r"lightmap|water|clouds?|proj|projectiles?|gibs?|debris|tracks?|hud|icons?|lod[1-9])([/_.-]|$)")


class ReservedSourceError(ValueError):
    """A reserved evaluation source was named for the corpus."""


@dataclass(frozen=True)
class Source:
    """One installable source of meshes.

    ``kind``: ``deb`` (a Debian package, version from dpkg), ``pip`` (a PyPI distribution, found through
    ``importlib.metadata`` in this Python's environment), ``npm`` (an npm package under
    ``<npm prefix>/node_modules``, see :func:`npm_prefix`), or ``folder`` (a user's own meshes).
    ``roots``: folders (or zip/pk3 archives) holding the meshes; for ``pip`` / ``npm`` relative to the installed
    package's folder (site-packages / ``node_modules/<package>``). ``up_axis``: of the files as loaded (``x``,
    ``y``, ``-y``, ``z`` or ``dae``), i.e. after assimp for the formats it reads: its ASE, MD3, IQM and MD5 readers
    turn the files' +Z up into +Y up themselves (a root-node matrix), so sources of those declare ``y``
    (a source mixing formats must load all of them with one up axis, as ``redeclipse-data`` does).
    ``category_levels``: which path components (relative to a root) name the category.
    """

    name: str
    roots: tuple[str, ...]
    extensions: tuple[str, ...]
    kind: str = "deb"
    up_axis: str = "z"
    exclude: str = DEFAULT_EXCLUDE
    category_levels: tuple[int, ...] = (0,)
    path_filter: str = ""  #: if set, only relative paths matching this regex
    #: "files" (one model file per object), "0ad-actors" (0 A.D. actor XMLs), "stk-nodes" (SuperTuxKart's
    #: library ``node.xml`` props and ``kart.xml`` karts, several ``.spm`` files placed as the game does, and
    #: the standalone ``.spm`` items), "minetest-mods", "ogre" (Ogre binary ``.mesh`` files textured through
    #: the ``.material`` scripts of their group, see :func:`_load_ogre_parts`) or "openscad" (``.scad`` programs
    #: evaluated by the ``openscad`` tool into ``OUT/.extract``, :func:`zero1to3.data.openscad.scad_to_ply`)
    reader: str = "files"
    #: objects whose second-largest bounding-box side is below this share of the largest are refused (poles,
    #: masts, cables: a line in every view); 0 keeps the generic 2% rule only
    min_side_ratio: float = 0.0
    #: at most this many objects of one near-duplicate group per split (size/colour variants of one generic
    #: model, e.g. ``Hangar_14x20m`` .. ``Hangar_25_20``); 0 = no limit (exact copies are dropped anyway)
    max_per_group: int = 0
    #: keep every texture's alpha as transparency (texels < 0.5 are not drawn); by default alpha is kept only
    #: where it looks like cut-out coverage (many games put gloss or team-colour masks there)
    keep_texture_alpha: bool = False
    #: skip a model file whose name (case-insensitive) was already found earlier in this source (FlightGear ships
    #: one model in several folders: ``Buildings/silo.ac`` and ``Agriculture/silo.ac``)
    unique_file_names: bool = False
    #: skip a model file whose name (case-insensitive) is also a model file's name anywhere under these folders
    #: (another package's copy or revision of the same model); folders that are not there are ignored
    names_taken_by: tuple[str, ...] = ()
    #: more folders where a model's named textures are looked for, as glob patterns relative to the folder above
    #: the model's own (searched after the usual ones, each pattern's matches in name order): FlightGear's AI
    #: aircraft keep each livery's texture in ``Textures/<livery>/``
    texture_folders: tuple[str, ...] = ()
    #: reader "minetest-mods": more folders whose ``textures/`` subfolders hold the textures a mod's Lua node
    #: definitions name (searched after the source's own roots: mods use other mods' and the base game's)
    texture_roots: tuple[str, ...] = ()
    #: resolve a texture name that holds a path (``textures/pickups.tga``) against these folders first (an
    #: archive stands for its extracted copy): Quake-engine games name textures from the game's data root, and
    #: Nexuiz keeps them in a second archive (``textures.pk3``) beside the models' ``data.pk3``
    texture_path_roots: tuple[str, ...] = ()
    #: parts whose name or material matches this regex are dropped too (besides terrain, sky, shadows, ...):
    #: Quake-engine map models carry the compiler's origin and caulk brushes as parts
    part_exclude: str = ""
    #: at most this many model files per folder (after ``exclude`` / ``path_filter``), evenly spaced in name
    #: order (the i-th of n kept files is file ``floor((i + 0.5) * total / n)``); 0 = no limit. KiCad's libraries
    #: hold hundreds of size/pin-count variants of one part
    max_per_folder: int = 0
    #: the licences, where the package's copyright file names none in DEP-5 ``License:`` fields (else read there;
    #: pip / npm: else the package metadata's licence field)
    licence: str = ""
    #: pip / npm: the pinned version (another installed version is skipped, so a corpus is reproducible)
    pin: str = ""
    #: pip / npm: the registry's name where it differs from ``name`` (npm scopes: ``@scope/pkg``; ``name`` is a
    #: folder and manifest name, so it has no ``@`` or ``/``)
    package: str = ""

    @property
    def registry_name(self) -> str:
        """The name the package manager knows."""
        return self.package or self.name


_G = "/usr/share/games"
_FG_BASE_ROOTS = (f"{_G}/flightgear/Scenery/Models", f"{_G}/flightgear/Scenery/Objects", f"{_G}/flightgear/Aircraft")
#: FlightGear's light models (halos, navigation and strobe lights, light cones, flares, lamps), whatever folder
_FG_LIGHTS = (r"|(^|/)lights?(/|\.ac$)|(^|/)light[-_]|[-_]light(s|ing)?\.ac$|(green|red|white)light|lamp|strobe"
              r"|toggle-white|(^|/|-)flare\.ac$|(^|/)flash\.ac$|(^|/)beacon\.ac$|procedural_light")
_MT = f"{_G}/minetest"
#: Minetest mod packages (``minetest-mod-*``, one source each so each keeps its version and licence): every
#: ``.obj`` / ``.b3d`` under the mod's ``models/`` folders is one object, textured by the Lua node definition that
#: first names the mesh (``mesh = "x.obj"``, ``tiles = {...}``; :func:`minetest_mesh_tiles`); +Y up as
#: minetest-data. Left out: worn/wielded player models and armour entities, low-poly copies, open/on states of
#: a model whose closed/off one is kept, flat planes (doors and trapdoors, paintings, calendars, rugs, blinds,
#: shutters, paper walls, fences, banisters, the dartboard, a wall sconce's back plate), chains, fire, plain
#: primitives (cube, roof slopes, a pole, a 12-triangle cabinet box), pipe junctions, the desk fan (its B3D
#: comes out broken)
_MT_MOD_EXCLUDE = (DEFAULT_EXCLUDE + r"|_lowpoly\.|_(open|on)\.(obj|b3d)$|3d_armor_(character|entity)"
                   r"|(^|/)models/[^/]*(painting|picture_frame|calendar|small_rug|windowblind|window_shutter"
                   r"|wall_japanese|fence_|banister|chains|fancy_fire|homedecor_cube|slope|pipeworks_pipe_\d+"
                   r"|crossover|door|dartboard|wall_sconce|round_pole|kitchen_cabinet\.|desk_fan)[^/]*$")
_MINETEST_MOD_SOURCES = tuple(
    Source(f"minetest-mod-{package}", (f"{_MT}/mods/{folder}",), (".obj", ".b3d"), up_axis="y",
           exclude=_MT_MOD_EXCLUDE, path_filter=r"(^|/)models/[^/]+$", reader="minetest-mods",
           category_levels=levels, min_side_ratio=0.08, max_per_group=2,
           texture_roots=(f"{_MT}/mods", f"{_MT}/games/minetest_game/mods"))
    for package, folder, levels in (("homedecor", "homedecor", (0,)), ("pipeworks", "pipeworks", ()),
                                    ("mesecons", "mesecons", (0,)), ("3d-armor", "3d_armor", (0,)),
                                    ("maidroid", "maidroid", (0,))))
#: OpenClonk meshes that are not objects of their own: the tutorial's help arrow, the front layers the game draws
#: over another object (the elevator case's front, the walkable trunk's front, the rustic bridge's planks), the
#: burnt airship (the airship's mesh with a burnt texture) and the defense goal's attacker (the boompack's mesh):
#: the plain airship and the boompack are kept instead; and the village crate, a plain 12-triangle box (the
#: same geometry as UFO:AI's and 0 A.D.'s boxes)
_OC_EXCLUDE = (DEFAULT_EXCLUDE + r"|(^|/)(HelpArrow|CaseFront|TrunkFront|AirshipBurnt|DefenseBoomAttack)\.ocd/"
               r"|(^|/)BridgeRustic\.ocd/Front\.ocd/|^Village\.ocd/Crate\.ocd/")
#: OpenClonk submeshes (by material) that are effects, not part of the object: the sword's swoosh trail
_OC_SKIP_MATERIALS = re.compile(r"^swoosh$", re.I)
#: MORSE objects left out: lamps, cameras, script holders and the ground plane (Blender scene helpers), flat
#: pieces (carpet, napkin, placemat, roof windows, the ArUco marker, a 12-triangle plate named Cube), the open
#: copy of a cupboard, the water surface, the tree made of two loose objects (trunk, crown), the thin and
#: medium copies of each book and the grey and white copies of the videotape (the same boxes), the plain box
#: robot Morsy, the milk carton (its body is cut out by the label's alpha), and three robots whose parts come
#: out apart or black (PR2, PatrolBot, Segway RMP 400)
_MORSE_EXCLUDE = (r"|\.blend/(lamp|camera|scene_script_holder|empty|_ground|cube|milk)[^/]*$"
                  r"|\.blend/[^/]*(carpet|napkin|placemat|fenstrar|_open|_(thin|medium)$|(grey|white)videotape)[^/]*$"
                  r"|^props/(animated_water|simplest_tree)|arucomarker|^robots/(morsy|pr2|patrolbot|segwayrmp400)\.")
#: Lugaru's models name no skin (the game sets them in code): model file stem -> image in ``Textures/`` (the
#: rabbit and wolf in their default fur); models not listed look for an image named like themselves
LUGARU_SKINS: dict[str, str] = {"body": "Fur.jpg", "wolf": "FurWolfGrey.jpg", "throwingknife": "Knife.png",
                                "rock": "Boulder.jpg"}
#: The sources `zero1to3 data build` knows (install: ``apt-get install -y <name> assimp-utils``).
SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("ufoai-data", (f"{_G}/ufoai/base/0models.pk3",), (".md2", ".obj"), up_axis="z",
           exclude=DEFAULT_EXCLUDE + r"|^models/(geoscape|sequence|soldiers|civilians|pilots|characters)/|head\d*\.md2$",
           category_levels=(1, 2)),
    # Red Eclipse's map models: +Y up as loaded in both formats. Its OBJ files are written +Y up (the Cube 2
    # engine's OBJ loader swaps Y and Z; 49 of the 72 test OBJ files have their lowest point at y = 0, none at
    # z = 0) and are read raw by trimesh; its IQM and MD5 files are +Z up as written, turned +Y up by assimp.
    # With "z" (before 2026-12-02: corpus, test256, test64, test64v2) all 97 objects lay a quarter turn off
    # upright (office chairs on their backs, doors flat, palm trees on their sides)
    Source("redeclipse-data", (f"{_G}/redeclipse/data",), (".obj", ".iqm", ".md5mesh"), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^(textures|maps|sounds|particles|fonts|weapons|actors|vanities)/",
           category_levels=(0,)),
    # Scorched3D's tanks, weapons and props: ASE files, +Z up as written, but assimp's ASE reader puts a
    # Z-up -> Y-up matrix on its root node, so the GLB it hands us is +Y up, hence up_axis "y" (with "z" the
    # models were turned a second time and stood on end: corpus and val renders before 2026-12-02, val64)
    Source("scorched3d-data", (f"{_G}/scorched3d/data",), (".ase",), up_axis="y", category_levels=(1,)),
    Source("torcs-data", (f"{_G}/torcs",), (".acc", ".ac"), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^(tracks|wheels)/|-(lod|shadow)|/shadow", category_levels=(0,)),
    Source("trigger-rally-data", (f"{_G}/trigger-rally/data.zip",), (".obj",), up_axis="z",
           category_levels=(0,)),
    Source("neverball-data", (f"{_G}/neverball",), (".obj",), up_axis="y", category_levels=(0,),
           exclude=DEFAULT_EXCLUDE + r"|^(map-|textures)"),
    # the base game and devtest (mods/ holds the minetest-mod-* packages' files: their own sources below)
    Source("minetest-data", (f"{_G}/minetest",), (".obj", ".b3d"), up_axis="y", category_levels=(1,),
           exclude=DEFAULT_EXCLUDE + r"|^mods/"),
    Source("warzone2100-data", (f"{_G}/warzone2100/base.wz", f"{_G}/warzone2100/mp.wz"), (".pie",), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^(effects|misc)/", category_levels=(0, 1)),
    # one model per unit or building: animation and state variants (walking, dying, construction, ...) and
    # the menu's old-format models are left out
    Source("megaglest-data", (f"{_G}/megaglest/techs", f"{_G}/megaglest/tilesets"), (".g3d",), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|(^|[/_])(dying|die|dead|death|walking|walk|run|running|attacking|attack"
                                     r"|charging|charge|construction|destruction|destroyed|building|build|mining"
                                     r"|morphing|healing|heal|producing|loaded|harvesting|working|repairing"
                                     r"|idle\d*|carrying)(\d*)(\.g3d$|[/_])"
                                     r"|_(wood|gold|stone)(\d*)(\.g3d$|_)",  # carried loads (resource models stay)
           category_levels=(0,)),
    # FlightGear's static scenery models (buildings, vehicles, ships, parked aircraft, street furniture) and a few
    # aircraft-folder models (the C172P, its ground equipment and baggage, human figures, pilots). Left out:
    # light effects, fences and walls, grass strips, approach-light rows, light poles and masts, instrument
    # panels and cockpit parts, shadow/damage variants; thin objects (poles, cables: second side < 8% of the
    # largest); beyond 3 size/colour variants of one generic model
    Source("flightgear-data-base", _FG_BASE_ROOTS, (".ac",), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^Boundaries/|^Trees/.*(grass|herbe)|approach_lights|polyframe"
                                     r"|lamp|light_?pole|light_?mast|lichtmast|[_-]light([_-]ba)?\.ac$|projo"
                                     r"|^w\d+n\d+/.*(lighthouse|viti)",  # Iceland's: huge light-sector discs
           path_filter=r"^(?!(c172p|Generic|ufo|Instruments-3d|Instruments)/)"
                       r"|^c172p/Models/(c172p\.ac$|Exterior/|Interior/(Baggages|FE-ELT)/)"
                       r"|^Generic/(Human/Models/[a-z]+\.ac$|Pilot/)|^ufo/Models/ufo\.ac$",
           category_levels=(0,), min_side_ratio=0.08, max_per_group=3, keep_texture_alpha=True),
    # OpenArena's items and map objects (MD3 in .pk3 archives; the 0.8.5 patch archive first, so its newer
    # copies win): weapons, ammo boxes, armour, health, power-ups, flags, statues, torches. assimp turns MD3's
    # +Z up into +Y up, hence up_axis "y"; the few ASE map pieces (untextured here: their textures are
    # Quake shaders in other archives) are not read. Left out: player
    # models (three tagged parts each), gibs, weapon hits, muzzle flashes, barrels and hands drawn apart from
    # the weapon, LOD copies (``_1``, ``_2``), the translucent health bubbles and rings, grass, palm fronds,
    # lights, cables and the domination markers; the power-ups drawn by glow or environment-map shaders (black
    # or empty with their skin as an albedo: Team Arena's runes, the instant power-ups) and the menhirs (empty)
    Source("openarena-data", tuple(f"{_G}/openarena/{p}.pk3" for p in (
               "baseoa/pak6-patch085", "baseoa/pak0", "baseoa/pak5-TA", "missionpack/mp-pak0")), (".md3",),
           up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^models/(players|weaphits|dpoints|weapons2/shells)/"
                                     r"|_(flash|barrel|hand|ring|player|sphere|portal)(_\d+)?\.md3$|_\d+\.md3$"
                                     r"|grass|palm_leafs|lights?_|lightspot|cables|overload_(energy|lights|target)"
                                     r"|^models/powerups/([a-z_]+\.md3|instant/.*)$|menhir",
           category_levels=(1,)),
    # Nexuiz's items and map objects (``data.pk3``; textures named from the game's data root, most of them in
    # ``textures.pk3``; assimp turns both MD3's and ASE's +Z up into +Y up). MD3: the weapons as they lie on
    # the ground (``g_*``; the ``v_*`` view models are the same meshes), ammo, armour, health, fuel and power-up
    # items, the office props, the forklift, the turrets as the map editor shows them assembled
    # (``turrets/radiant/``; the loose heads, bases and gibs are not read), the Onslaught generator and control
    # point (undamaged only), the Nexball, the key-hunt key, the race checkpoint, the spiderbot's control point
    # and the two CTF flags. ASE: the ``desertfactory`` map's furniture, barrels, tanks, machines and huts, the
    # jump pads, teleporters and spotlight of ``mapobjects`` and the aircraft; their map compiler's origin and
    # caulk brushes are dropped as parts. Not read: the trees (their leaves are a shader with no image of that
    # name), player models (ZYM), vehicles (DPM), the map pieces (walls, floors, pipes, cables, supports, roofs,
    # garage doors, a stove pipe, lamps on wires: lines or slabs in most views) and the race track's train
    Source("nexuiz-data", (f"{_G}/nexuiz/data/data.pk3", f"{_G}/nexuiz/data/textures.pk3"), (".md3", ".ase"),
           up_axis="y",
           path_filter=r"^models/(weapons/g_[a-z]+|items/[a-z0-9_]+|it/[a-z]+|map/forklift|turrets/radiant/[a-z0-9]+"
                       r"|onslaught/(generator|controlpoint_pad|controlpoint_icon)|nexball/ball|keyhunt/key"
                       r"|race/checkpoint/checkpoint|spiderbot/cp|ctf/flag_(blue|red))\.md3$"
                       r"|^models/desertfactory/(objects_metal/(archive|barrel|boiler|generator|radio|tank)\d+"
                       r"|objects_wood/(bed|chair|closet|logs|pallet|table)\d+|structure_wood/(hut|toilethut)\d+)\.ase$"
                       r"|^models/(aircraft/a|mapobjects/(hrjumpad|hrteleporter|hrspotlight|morphed_jumppad/jumppad"
                       r"|morphed_tele/(telepad|teledevice)))\.ase$",
           category_levels=(1,), min_side_ratio=0.08, max_per_group=2,
           part_exclude=r"(^|[ /])common/|radiant/notex|(^| )noshader",
           texture_path_roots=(f"{_G}/nexuiz/data/data.pk3", f"{_G}/nexuiz/data/textures.pk3")),
    # DreamChess's 3D chess pieces (its own text .dcm format, formats.read_dcm; +Z up): the six pieces of the
    # ``classic`` and ``elements`` sets, textured with the set's white.png (exact copies between the sets are
    # dropped as everywhere). Not read: the boards (flat 9 x 9 x 0.2 slabs) and the 2D sets' flat quads
    Source("dreamchess-data", (f"{_G}/dreamchess/pieces",), (".dcm",), up_axis="z",
           path_filter=r"^(classic|elements)/(pawn|knight|bishop|rook|queen|king)\.dcm$", category_levels=(0,)),
    Source("0ad-data", (f"{_G}/0ad/mods/public/public.zip",), (".xml",), up_axis="y", reader="0ad-actors",
           exclude=DEFAULT_EXCLUDE + r"|^(particle|special|temp|campaigns)/|destruct|rubble|garrison|"
                                     r"(^|/)(units/.*(infantry|cavalry|hero|champion|support|female|citizen))",
           category_levels=(0, 1)),
    # FlightGear's "standard models" package (generic buildings, ships, airport vehicles, jetways, buoys, trains,
    # the carriers and stores of the AI scenarios): every .ac file is one object, except the 190 whose name
    # flightgear-data-base already ships (the same model, often another revision) and later same-name copies
    # inside this package. Left out: clouds, sky and planet spheres, volcanoes, push-back cursors, light effects
    # and lamps, flags, wakes, smoke puffs, craters, tracers, carrier landing aids (datum, flols, cut and wave-off
    # lights), the deck-park and lighting layers and Clemenceau's hull/deck/superstructure parts, propellers,
    # tow ropes, a ground tile, a jetway's glass, a suburb of tiny houses, Truman and Vinson (Nimitz's sister
    # ships); thin objects and > 3 variants of one generic model as above
    Source("flightgear-data-models", (f"{_G}/flightgear/Models",), (".ac",), up_axis="y",
           exclude=DEFAULT_EXCLUDE + _FG_LIGHTS
                   + r"|^(Weather|Astro|Autopush|Volcanoes|Generic)/|towropes|groundtile|Jetway/glass\.ac$"
                     r"|propellers?/"
                     r"|^Geometry/(.*/)?(puff|crater|contrail|tracer|null|square|thermalcap|sillage|cut|datum|flols"
                     r"|glide-path|wave-off|clock|ensign|foxtrot|golf)[^/]*\.ac$|parks-and-objects"
                     r"|^Geometry/Clemenceau/(hull|pont|clem-superstructure)|^Geometry/Nimitz/(truman|vinson)\.ac$"
                     r"|banlieue",
           category_levels=(0,), min_side_ratio=0.08, max_per_group=3, keep_texture_alpha=True,
           unique_file_names=True, names_taken_by=_FG_BASE_ROOTS),
    # FlightGear's AI traffic models: one object per aircraft model file (its liveries are textures picked by
    # XML; the texture the model file names is taken from ``Textures/Default``, else from the first livery
    # folder in name order that has it); the AI ships' and vehicles' models live in flightgear-data-models. Left
    # out: navigation/strobe/landing lights and light cones, flares, exhausts, a towed banner, the tanker's
    # refuelling hoses, loose parts (wheels, cargo pod, shuttle engines and pods); the Buccaneer and Cri-cri
    # (their packed textures come out mostly transparent) and the Vulcan (parts drawn apart); models whose name
    # the two other FlightGear packages already ship (C172P, F-15, Mirage 2000, Tu-154B, a ferry)
    Source("flightgear-data-ai", (f"{_G}/flightgear/AI/Aircraft",), (".ac",), up_axis="y",
           exclude=DEFAULT_EXCLUDE + _FG_LIGHTS
                   + r"|exhaust|banner|refueling/|Caravan/Models/(tank|wheels)\.ac$|SpaceShuttle/(OMSPods|SSME)"
                     r"|^(Buccaneer|cri-cri|vulcanb2)/",
           category_levels=(0,), min_side_ratio=0.08, max_per_group=3, keep_texture_alpha=True,
           unique_file_names=True, names_taken_by=_FG_BASE_ROOTS + (f"{_G}/flightgear/Models",),
           texture_folders=("Textures", "Textures/[Dd]efault", "Textures/*")),
    # SuperTuxKart's standalone objects (SPM meshes, read by zero1to3.data.spm; +Y up): each library prop as its
    # node.xml places its parts (most detailed LOD, no collision hulls), each kart as its body with the four
    # wheels, and the item models (gifts, nitro cans, bananas, trophies). Left out: tracks/ (scenery), the
    # effect nodes and rail landscape, LOD copies of items, the swatter's animation copy, the bubble-gum shields;
    # strings of flags and lights and a light beam (a few specks in every view), and a plain 24-triangle box grid
    # (its shape would pull a val object out of val); thin objects as FlightGear's (second side < 8%)
    Source("supertuxkart-data", (f"{_G}/supertuxkart/data",), (".spm", ".xml"), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^library/stklib_(boxGrid|partyFlags|prayerFlags|redXmasLight|skyBeam"
                                     r"|oldLightBulbGroup)(_a)?/",
           reader="stk-nodes", category_levels=(0,), min_side_ratio=0.08),
    *_MINETEST_MOD_SOURCES,
    # KiCad's 3D models of electronic components (VRML 2.0 read by formats.read_vrml, coloured per material, +Z
    # up off the board): one object per .wrl file, at most 20 files per library folder (evenly spaced in name
    # order: the libraries are long runs of pin-count and size variants) and 2 per near-duplicate group. Left
    # out: the pin header/socket libraries other than 2.54 mm (the same parts at other pitches), loose pins and
    # test points; long thin parts (long pin-header rows, axial parts: second side < 15% of the largest, a line at
    # 64 px)
    Source("kicad-packages3d", ("/usr/share/kicad/3dmodels",), (".wrl",), up_axis="z",
           exclude=DEFAULT_EXCLUDE + r"|^Connector_Pin(Header|Socket)_(1\.00|1\.27|2\.00)mm\.3dshapes/"
                                     r"|^(Connector_Pin|TestPoint)\.3dshapes/",
           category_levels=(0,), min_side_ratio=0.15, max_per_group=2, max_per_folder=20),
    # OpenClonk's objects (Ogre binary meshes read by zero1to3.data.ogre, textured through the groups' .material
    # scripts; +Y up): every .mesh file in the definition groups Objects.ocd and Decoration.ocd and in the
    # arena and parkour scenarios' own definitions, each one object in its stored (rest) pose; the groups are
    # C4Group files, unpacked by zero1to3.data.c4group into OUT/.extract. Left out: see _OC_EXCLUDE
    Source("openclonk-data", tuple(f"{_G}/openclonk/{g}" for g in (
               "Objects.ocd", "Decoration.ocd", "Arena.ocf", "Parkour.ocf")), (".mesh",), up_axis="y",
           exclude=_OC_EXCLUDE, reader="ogre", category_levels=(0,), min_side_ratio=0.08, max_per_group=2,
           licence="ISC (engine); game content CC-BY-3.0 or CC0 (the copyright file names no files)"),
    # MORSE's robots, sensors, actuators and props (Blender 2.7 files through assimp; reader "blend-nodes": one
    # object per top-level Blender object, e.g. 50 pieces of furniture in props/furnitures.blend; textures are
    # packed in the files). The environments (whole rooms and landscapes) are not read
    Source("morse-simulator-data", ("/usr/share/morse/data",), (".blend",), up_axis="z", reader="blend-nodes",
           exclude=DEFAULT_EXCLUDE + _MORSE_EXCLUDE, path_filter=r"^(props|robots|sensors|actuators)/",
           category_levels=(0,), min_side_ratio=0.08, max_per_group=2),
    # GLtron's light cycle and recognizer (OBJ + MTL, +Z up: the game's world is). Left out: the lower-detail
    # cycles and the recognizer's quad-mesh copy
    Source("gltron", (f"{_G}/gltron/data",), (".obj",), up_axis="z",
           exclude=DEFAULT_EXCLUDE + r"|-(low|med)\.obj$|_quad\.obj$", category_levels=()),
    # Lugaru's characters, weapons and a boulder (its own .solid format, formats.read_solid; the models hang head
    # down along -Y): the rabbit (Body), the wolf, the hawk, the sword, the throwing knife, a boulder (the staff
    # is refused as thin). Left out: the other poses of the rabbit and wolf bodies (Body2-7, Wolf2-7), their
    # low-detail copies and an older untextured rabbit body (Rabbit), the eye parts (eye, iris, cornea), the belt,
    # plain boxes and map pieces (box, platform, wall, chimney, tunnel, two untextured blocks) and the billboard
    # plants and sprites (bush, leaves, tree trunk, spike: 5-16 triangles)
    Source("lugaru-data", (f"{_G}/lugaru/Models",), (".solid",), up_axis="-y",
           exclude=DEFAULT_EXCLUDE + r"|^(body|wolf)(\d|low)|^(rabbit|eye|iris|cornea|belt|box|platform|wall|bush"
                                     r"|leaves|treetrunk|spike|chimney|cool|tunnel|weird)\.solid$",
           category_levels=(), min_side_ratio=0.08, texture_folders=("Textures",)),
    # OpenCity's buildings, trees and vehicles (AC3D through assimp, +Y up as FlightGear's): one object per .ac
    # file. Left out: road and power-line tiles (flat pieces of a network), the empty zone markers and the waste
    # ground (a flat lot)
    Source("opencity-data", (f"{_G}/opencity/graphism",), (".ac",), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^path/|^electricity/line_|(^|/)[cir]_zone/|waste_ground",
           category_levels=(0,), min_side_ratio=0.08, max_per_group=2),
    # GL-117's aircraft, ground vehicles, ships, buildings and SAM sites (3DS through assimp; textures in
    # ``textures/``, named in upper case). Left out: chaff, flares, rubble, the wall and barrier segments, the
    # missiles (eight near-identical rods, a line at 64 px) and the title logo. No group limit: the name rule
    # joins the different aircraft ``gl-14`` .. ``gl-50`` (the recoloured ``gl-14b`` .. ``d`` are exact copies)
    Source("gl-117-data", (f"{_G}/gl-117/models",), (".3ds",), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^(chaff|flare|rubble|wall|barrier|missile|gl-117)\d*\.3ds$",
           category_levels=(), min_side_ratio=0.08, texture_folders=("textures",)),
    # CRRCsim's radio-controlled model aircraft and airfield props (AC3D through assimp, +Y up; textures in
    # ``textures/``). Left out: the scenery pieces (terrain patches of the flying sites), the frequency board (a
    # flat sign) and the low-detail copy of a tree
    Source("crrcsim-data", (f"{_G}/crrcsim/objects",), (".ac",), up_axis="y",
           exclude=DEFAULT_EXCLUDE + r"|^(woods_terrain|davis|cape_cod|small|freqboard)\.ac$|_L\.ac$",
           category_levels=(), min_side_ratio=0.08, max_per_group=2, texture_folders=("textures",)),
    # npm: the WebXR input profiles' VR controllers (textured GLB, +Y up as glTF), one object per profile folder:
    # its left-hand model, or ``none.glb`` for single-handed controllers (the right hand is the left's mirror
    # image). Left out: the ``generic-*`` profiles (one generic controller in a dozen button layouts, and
    # untextured stand-in hands)
    Source("webxr-input-profiles-assets", ("dist/profiles",), (".glb",), kind="npm", pin="1.0.20",
           package="@webxr-input-profiles/assets", up_axis="y", exclude=DEFAULT_EXCLUDE + r"|^generic-",
           path_filter=r"^[^/]+/(left|none)\.glb$", category_levels=(), min_side_ratio=0.08, max_per_group=2,
           licence="MIT (the package's LICENSE, Copyright (c) 2019 Amazon; package.json names none)"),
    # PyPI: example-robot-data's robots, each URDF assembled at its zero joint positions (reader ``urdf``; +Z up;
    # COLLADA links need pycollada). One URDF per robot, named here. Left out: robots that also ship with the
    # reserved pybullet / robosuite / dm-control (Panda, UR3/5/10, Kinova, Baxter, Laikago, A1, xArm, TIAGo,
    # TIAGo Pro, ANYmal B + Kinova), variants of a kept one (Alex's other hands, the right Allegro hand,
    # ``*_simple`` / ``*_small`` / ``*_box`` / ``icub_reduced`` / ``b1-z1``), parts (Talos' arm, Alexander's legs),
    # primitive stand-ins (double pendulum, human, quadruped, simple humanoid), iCub (its links come out apart),
    # ANYmal B (pybullet_data ships its meshes, quadruped/ANYmal), G1's handless copy and Talos full (variants
    # of kept robots). Robots over 200k triangles (B1, Centauro, G1, Go1, SO-101, Z1, qb two-DOF) have their
    # heavy links decimated (corpus.URDF_FACE_BUDGET; needs fast_simplification)
    Source("example-robot-data", ("cmeel.prefix/share/example-robot-data/robots",), (".urdf",), kind="pip",
           pin="6.0.0", up_axis="z", reader="urdf", category_levels=(0,), min_side_ratio=0.08, max_per_group=2,
           path_filter=r"^(alex_description/urdf/alex_nub_hands|allegro_hand_description/urdf/allegro_left_hand"
                       r"|anymal_c_simple_description/urdf/anymal|bolt_description/robots/bolt"
                       r"|borinot_description/urdf/borinot_flying_arm_2|finger_edu_description/robots/finger_edu"
                       r"|go2_description/urdf/go2|hector_description/robots/quadrotor_base"
                       r"|hextilt_description/urdf/hextilt_flying_arm_5|hyq_description/robots/hyq_no_sensors"
                       r"|iris_description/robots/iris|pr2_description/urdf/pr2|romeo_description/urdf/romeo"
                       r"|so_arm_description/urdf/so100|solo_description/robots/solo|solo_description/robots/solo12"
                       r"|talos_data/robots/talos_reduced"
                       r"|asr_twodof_description/urdf/TwoDofs|b1_description/urdf/b1|centauro_description/urdf/centauro"
                       r"|g1_description/urdf/g1_29dof_with_hand_rev_1_0|go1_description/urdf/go1"
                       r"|so_arm_description/urdf/so101|z1_description/urdf/z1)\.urdf$"),
    # OpenSCAD's example programs (CC0: debian/copyright's ``Files: examples/*``), each evaluated by the openscad
    # tool into a mesh (reader "openscad"; +Z up; one colour, OpenSCAD's render yellow). The 2D-only and empty
    # ones make no 3D mesh and fail (logged in failed.txt); the .json files are parameter sets, not programs. Left
    # out: demos that lay out many separate small pieces (children, assert, CSG-modules, example018) and functions
    # (specks: nothing to see at 64 px). No group limit: the name rule joins the different shapes ``Old/example001``
    # .. ``024``
    Source("openscad", ("/usr/share/openscad/examples",), (".scad",), up_axis="z", reader="openscad",
           exclude=DEFAULT_EXCLUDE + r"|^(Advanced/(children|assert)|Basics/CSG-modules|Functions/functions"
                                     r"|Old/example018)\.scad$",
           category_levels=(0,), min_side_ratio=0.08,
           licence="CC0-1.0 (the examples: debian/copyright's Files: examples/*; the program itself GPL-2+)"),
)}

#: Default split of the known packages: whole packages per split (held-out makers).
DEFAULT_SPLITS: dict[str, str] = {
    "0ad-data": "train", "ufoai-data": "train", "minetest-data": "train", "megaglest-data": "train",
    "flightgear-data-base": "train", "openarena-data": "train", "flightgear-data-models": "train",
    "flightgear-data-ai": "train", "supertuxkart-data": "train", "kicad-packages3d": "train",
    "openclonk-data": "train",
    "morse-simulator-data": "train", "opencity-data": "train", "gl-117-data": "train", "crrcsim-data": "train",
    "gltron": "train", "lugaru-data": "train", "webxr-input-profiles-assets": "train", "example-robot-data": "train",
    "nexuiz-data": "train", "dreamchess-data": "train", "openscad": "train",
    **{source.name: "train" for source in _MINETEST_MOD_SOURCES},
    "warzone2100-data": "val", "scorched3d-data": "val",
    "redeclipse-data": "test", "torcs-data": "test", "neverball-data": "test", "trigger-rally-data": "test",
}


def check_not_reserved(name: str, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`ReservedSourceError` if ``name`` (or a component of ``path``) is a reserved source."""
    candidates = {name.lower()}
    if path is not None:
        candidates |= {part.lower() for part in Path(path).parts}
    hit = sorted(candidates & set(RESERVED_SOURCES))
    if hit:
        raise ReservedSourceError(f"{hit[0]!r} is reserved for independent evaluation and is never used "
                                  "for training, tuning or rendering")


# --------------------------------------------------------------------------------------------- package info
#: environment variable naming the npm prefix (``npm install --prefix``); its ``node_modules`` holds npm sources
NPM_PREFIX_ENV = "ZERO1TO3_NPM_PREFIX"
DEFAULT_NPM_PREFIX = "~/.cache/zero1to3/npm"


def npm_prefix() -> Path:
    """Where npm sources are installed: ``$ZERO1TO3_NPM_PREFIX``, else ``~/.cache/zero1to3/npm``. Why a prefix of
    our own: the project is Python; its npm asset packages belong to no JavaScript project's ``node_modules``."""
    return Path(os.environ.get(NPM_PREFIX_ENV) or DEFAULT_NPM_PREFIX).expanduser()


def install_command(source: Source) -> str:
    """The command that installs ``source`` (pinned for pip / npm); empty for a folder."""
    if source.kind == "pip":
        return f"pip install {source.registry_name}=={source.pin}" if source.pin else f"pip install {source.name}"
    if source.kind == "npm":
        spec = f"{source.registry_name}@{source.pin}" if source.pin else source.registry_name
        return f"npm install --prefix {npm_prefix()} {spec}"
    if source.kind == "deb":
        return f"apt-get install -y {source.name}"
    return ""


def _pip_distribution(name: str, path: Sequence[str] | None = None):
    """The installed distribution ``name`` (in ``path``, default ``sys.path``), or None."""
    import importlib.metadata as metadata

    if path is None:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return None
    wanted = re.sub(r"[-_.]+", "-", name).lower()
    for dist in metadata.distributions(path=list(path)):
        if re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower() == wanted:
            return dist
    return None


def _npm_package_json(source: Source) -> dict | None:
    path = npm_prefix() / "node_modules" / source.registry_name / "package.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def package_root(source: Source, pip_path: Sequence[str] | None = None) -> Path | None:
    """The folder a pip / npm source's ``roots`` are relative to (site-packages / ``node_modules/<package>``);
    None when not installed. ``pip_path``: where to look for distributions (default ``sys.path``)."""
    if source.kind == "pip":
        dist = _pip_distribution(source.registry_name, pip_path)
        return None if dist is None else Path(str(dist.locate_file(""))).resolve()
    if source.kind == "npm":
        return npm_prefix() / "node_modules" / source.registry_name if _npm_package_json(source) else None
    return None


def located(source: Source, pip_path: Sequence[str] | None = None) -> Source:
    """``source`` with absolute ``roots`` (pip / npm: joined to :func:`package_root`); others as they are."""
    if source.kind not in ("pip", "npm"):
        return source
    root = package_root(source, pip_path)
    if root is None:
        raise FileNotFoundError(f"{source.name} is not installed ({install_command(source)})")
    from dataclasses import replace

    return replace(source, roots=tuple(str(root / r) for r in source.roots))


def registry_licence(source: Source, pip_path: Sequence[str] | None = None) -> str:
    """The licence a pip / npm package's metadata states (``License-Expression``, ``License``, or the
    ``License ::`` classifiers; package.json ``license``)."""
    if source.kind == "npm":
        value = (_npm_package_json(source) or {}).get("license")
        return value if isinstance(value, str) and value else "unknown (no license field)"
    dist = _pip_distribution(source.registry_name, pip_path)
    if dist is None:
        return "unknown (not installed)"
    meta = dist.metadata
    for key in ("License-Expression", "License"):
        value = (meta.get(key) or "").strip()
        if value and value.upper() != "UNKNOWN" and "\n" not in value:
            return value
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return "; ".join(classifiers) or "unknown (no licence metadata)"


def package_version(source: Source, pip_path: Sequence[str] | None = None) -> str | None:
    """Installed version of a Debian / pip / npm package (None if not installed); ``local`` for folders."""
    if source.kind == "pip":
        dist = _pip_distribution(source.registry_name, pip_path)
        return None if dist is None else dist.version
    if source.kind == "npm":
        version = (_npm_package_json(source) or {}).get("version")
        return str(version) if version else None
    if source.kind != "deb":
        return "local"
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", source.name],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or "install ok installed" not in out.stdout:
        return None
    return out.stdout.split("\t", 1)[1].strip()


def package_licence(name: str, doc_root: str = "/usr/share/doc") -> str:
    """The licences the package's copyright file states (DEP-5 ``License:`` names, most frequent first)."""
    path = Path(doc_root) / name / "copyright"
    if not path.is_file():
        return "unknown (no copyright file)"
    names = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("License:"):
            value = line.split(":", 1)[1].strip()
            if value:
                names[value] += 1
    return "; ".join(n for n, _ in names.most_common()) if names else "see " + str(path)
