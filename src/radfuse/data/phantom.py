"""Draw one synthetic lumbar-spine CT volume (HU) and its label map from a plain description.

The anatomy is analytic: every vertebral body is an elliptic cylinder (concave posterior wall, slightly concave
endplates) whose endplate surfaces can be lowered to model a wedge, biconcave or crush deformity, with a bulge of
the posterior wall (retropulsion), a cortical shell, trabecular texture, fracture lines and a gas cleft. Around
it: discs, a spinal canal with a bony arch and spinous process, paraspinal muscle, fat and air behind the skin.

A scanner ("site") is simulated the way CT forms an image: the scene is drawn on a grid several times finer along
z and averaged into slabs of the slice thickness (partial volume), blurred by a Gaussian reconstruction kernel,
given correlated noise, and mapped through a HU calibration (scale, offset). Coordinates are physical (mm, LPS:
x to the patient's left, y posterior, z superior); an image stored with a flipped direction matrix is still the
same patient in physical space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

FOV_X_MM = (-31.0, 31.0)
FOV_Y_MM = (-22.0, 40.0)  # the vertebral body sits in front, skin and some air behind
FINE_Z_MM = 0.75  # sub-slice spacing used to integrate partial volume over a slice
Z_MARGIN_MM = 6.0  # how much of the neighbouring vertebrae the field of view keeps
AIR_HU, FAT_HU, MUSCLE_HU, CSF_HU, DISC_HU = -1000.0, -100.0, 45.0, 12.0, 85.0
HU_MIN, HU_MAX = -1024, 3071
HAEMATOMA_MM = 6.0  # reach of an acute fracture's paravertebral swelling
# SD of (unit fine - unit coarse) Gaussian-filtered noise when coarse sigma = 2 x fine on all 3 axes: the two
# are correlated by (2*1*2 / (1 + 4)) ** (3/2) = 0.8 ** 1.5.
_BAND_SD = float(np.sqrt(2.0 - 2.0 * 0.8**1.5))


@dataclass(frozen=True)
class SiteProtocol:
    """How one scanner and reconstruction protocol turns the scene into an image."""

    name: str
    spacing_xy_mm: float
    slice_mm: float  # thickness = spacing between slices
    kernel_mm: float  # sigma of the Gaussian reconstruction kernel (in-plane)
    noise_sd_hu: float  # SD of the added noise before calibration
    noise_corr_mm: float  # sigma of the in-plane noise correlation
    hu_scale: float
    hu_offset: float
    flip_xy: bool = False  # store with direction diag(-1, -1, 1), as many NIfTI converters do


@dataclass(frozen=True)
class VertebraSpec:
    """One vertebra; `label` > 0 marks a target ROI in the label map, 0 a neighbour."""

    label: int
    height_mm: float
    half_width_mm: float
    half_depth_mm: float
    y_shift_mm: float
    trabecular_hu: float
    cortical_hu: float
    cortex_mm: float
    texture_sd_hu: float
    texture_sigma_mm: float
    texture_anisotropy: float  # > 1: vertically elongated texture (loss of horizontal trabeculae)
    deformity: str = "none"  # none | wedge | biconcave | crush
    height_loss: float = 0.0  # fraction of the nominal height lost where the deformity is deepest
    retropulsion_mm: float = 0.0
    marrow_shift_hu: float = 0.0  # impaction / oedema: denser marrow, invisible to a z-scored crop
    condensation_hu: float = 0.0  # sclerotic band under the superior endplate
    fracture_lines: int = 0
    gas_cleft: bool = False
    haematoma_hu: float = 0.0  # acute fracture: denser paravertebral soft tissue (swelling, fat stranding)


@dataclass(frozen=True)
class VolumeSpec:
    """A whole volume: vertebrae from inferior to superior, the site, and the noise seed."""

    site: SiteProtocol
    vertebrae: tuple[VertebraSpec, ...]
    disc_mm: float
    skin_y_mm: float
    seed: tuple[int, ...]


@dataclass
class _Grid:
    x: np.ndarray  # (n,) voxel centres
    y: np.ndarray  # (n,)
    z: np.ndarray  # (nz,) slice centres
    z_fine: np.ndarray  # (nz * k,) sub-slice centres
    k: int  # sub-slices per slice
    centres_z: list[float]  # vertebral body centres


def draw_volume(spec: VolumeSpec) -> tuple[sitk.Image, sitk.Image]:
    """Return (CT image in HU as int16, label map as uint8) on the same physical grid."""
    rng = np.random.default_rng(np.random.SeedSequence(list(spec.seed)))
    grid = _make_grid(spec)
    scene = _background(spec, grid, rng)
    labels_fine = np.zeros(scene.shape, dtype=np.uint8)
    for vertebra, centre in zip(spec.vertebrae, grid.centres_z):
        _draw_vertebra(scene, labels_fine, vertebra, centre, spec, grid, rng)
    image = _acquire(scene, grid, spec.site, rng)
    labels = _slab_labels(labels_fine, grid.k, [v.label for v in spec.vertebrae if v.label > 0])
    return _to_sitk(image, grid, spec.site), _to_sitk(labels, grid, spec.site)


# ---------------------------------------------------------------------------------------------- layout
def _make_grid(spec: VolumeSpec) -> _Grid:
    site = spec.site
    n = int(round((FOV_X_MM[1] - FOV_X_MM[0]) / site.spacing_xy_mm))
    x = FOV_X_MM[0] + (np.arange(n) + 0.5) * site.spacing_xy_mm
    y = FOV_Y_MM[0] + (np.arange(n) + 0.5) * site.spacing_xy_mm
    heights = [v.height_mm * (1 - v.height_loss if v.deformity == "crush" else 1.0) for v in spec.vertebrae]
    centres, top = [], 0.0
    for h in heights:  # stack bodies and discs from the bottom up; a crushed body shortens the column
        centres.append(top + h / 2)
        top += h + spec.disc_mm
    z_lo = heights[0] - Z_MARGIN_MM
    z_hi = centres[-1] - heights[-1] / 2 + Z_MARGIN_MM
    nz = int(np.ceil((z_hi - z_lo) / site.slice_mm))
    z = z_lo + (np.arange(nz) + 0.5) * site.slice_mm
    k = max(1, int(np.ceil(site.slice_mm / FINE_Z_MM)))
    sub = (np.arange(k) + 0.5) / k - 0.5
    z_fine = (z[:, None] + sub[None, :] * site.slice_mm).ravel()
    return _Grid(x=x, y=y, z=z, z_fine=z_fine, k=k, centres_z=centres)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit SD (exact kernel energy, not the sample SD)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    return field / np.float32(_kernel_norm(sigma))


def _kernel_norm(sigma: tuple[float, ...]) -> float:
    """SD of Gaussian-filtered unit white noise: the L2 norm of the discrete kernel."""
    norm = 1.0
    for s in sigma:
        if s <= 0:
            continue
        radius = int(4 * s + 0.5)
        impulse = np.zeros(2 * radius + 1)
        impulse[radius] = 1.0
        norm *= float(np.sqrt(np.sum(ndimage.gaussian_filter1d(impulse, s, mode="constant") ** 2)))
    return norm


def _background(spec: VolumeSpec, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Air behind the skin, subcutaneous fat, muscle with fat planes, discs and the canal; constant along z."""
    xx, yy = np.meshgrid(grid.x, grid.y, indexing="xy")  # (ny, nx): rows are y, columns x
    plane = np.full(xx.shape, MUSCLE_HU, dtype=np.float32)
    spacing = spec.site.spacing_xy_mm
    fat_field = _smooth_field(rng, xx.shape, (2.5 / spacing, 2.5 / spacing))
    body = spec.vertebrae[len(spec.vertebrae) // 2]
    in_front = yy < -body.half_depth_mm - 2.0 + body.y_shift_mm
    plane[(in_front & (fat_field > 0.0)) | (fat_field > 1.6)] = FAT_HU  # retroperitoneal and intermuscular fat
    skin = spec.skin_y_mm - 0.0015 * xx**2  # a gently curved back
    plane[yy > skin - 3.5] = FAT_HU
    plane[yy > skin] = AIR_HU
    radius = _body_radius(np.arctan2(yy - body.y_shift_mm, xx), body.half_width_mm, body.half_depth_mm, 1.0)
    rho = np.hypot(xx, yy - body.y_shift_mm) / (1.03 * radius + 0.4)  # discs bulge a little
    plane[rho < 1] = DISC_HU - 15.0 * np.clip(1 - rho[rho < 1] ** 2, 0, 1)  # softer nucleus in the middle
    canal = _canal(xx, yy, body)
    plane[canal < 1] = CSF_HU
    return np.broadcast_to(plane, (grid.z_fine.size, *plane.shape)).copy()


def _body_radius(theta: np.ndarray, a: float, b: float, concavity_mm: float) -> np.ndarray:
    """Radius of the axial outline: an ellipse with a concave posterior wall (+y is posterior)."""
    ellipse = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    return ellipse - concavity_mm * np.exp(-(((theta - np.pi / 2) / 0.45) ** 2))


def _canal_geometry(body: VertebraSpec) -> tuple[float, float, float]:
    """(centre y, lateral and AP semi-axes) of the spinal canal, just behind the posterior wall."""
    semi_x, semi_y = 0.62 * body.half_width_mm, 0.5 * body.half_depth_mm
    return body.y_shift_mm + body.half_depth_mm - 1.0 + semi_y + 0.3, semi_x, semi_y


def _canal(xx: np.ndarray, yy: np.ndarray, body: VertebraSpec) -> np.ndarray:
    centre, semi_x, semi_y = _canal_geometry(body)
    return np.hypot(xx / semi_x, (yy - centre) / semi_y)


# ---------------------------------------------------------------------------------------------- vertebra
def _draw_vertebra(scene: np.ndarray, labels: np.ndarray, v: VertebraSpec, centre: float, spec: VolumeSpec,
                   grid: _Grid, rng: np.random.Generator) -> None:
    h = v.height_mm
    xx, yy = np.meshgrid(grid.x, grid.y - v.y_shift_mm, indexing="xy")
    if v.haematoma_hu:
        _draw_haematoma(scene, xx, yy, grid.z_fine, centre, v)
    arch = _slab(grid.z_fine, centre - 0.8 * h, centre + 0.7 * h)
    _draw_arch(scene[arch], xx, yy, (grid.z_fine[arch] - centre).astype(np.float32), v, rng)
    box = _body_box(grid, v, centre)  # texture filtering is the costly part: keep it to the body
    zl = (grid.z_fine[box[0]] - centre).astype(np.float32)
    xx, yy = xx[box[1:]], yy[box[1:]]
    block = scene[box]
    depth, top = _body_depth(xx, yy, zl, v)
    inside = depth > 0
    cortex = inside & (depth < v.cortex_mm)
    marrow = _marrow(zl, depth, top, v, spec.site, grid, rng)
    block[inside] = marrow[inside]
    block[cortex] = v.cortical_hu
    _draw_lesions(block, inside, cortex, xx, yy, zl, v, rng)
    if v.label:
        labels[box][inside] = v.label


def _draw_haematoma(scene: np.ndarray, xx: np.ndarray, yy: np.ndarray, z: np.ndarray, centre: float,
                    v: VertebraSpec) -> None:
    """Soft tissue (below 150 HU) within HAEMATOMA_MM of the body's anterior and lateral wall, over the body's
    height, made denser by `haematoma_hu`, fading with distance (e-folding 2.5 mm): what a margin crop sees."""
    theta, r = np.arctan2(yy, xx), np.hypot(xx, yy)
    outside = r - _body_radius(theta, v.half_width_mm, v.half_depth_mm, 1.0)
    near = (outside > 0) & (outside < HAEMATOMA_MM) & (yy < 0.3 * v.half_depth_mm)  # not behind: the canal
    weight = np.where(near, np.exp(-outside / 2.5), 0.0).astype(np.float32)
    block = scene[_slab(z, centre - v.height_mm / 2, centre + v.height_mm / 2)]
    block += np.where(block < 150.0, np.float32(v.haematoma_hu) * weight[None], np.float32(0.0))


def _slab(z: np.ndarray, lo: float, hi: float) -> slice:
    idx = np.nonzero((z >= lo) & (z <= hi))[0]
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)


def _body_box(grid: _Grid, v: VertebraSpec, centre: float) -> tuple[slice, slice, slice]:
    """(z, y, x) index ranges that hold the body with a margin of 1.5 mm."""
    margin = 1.5
    y_lo, y_hi = v.y_shift_mm - v.half_depth_mm - margin, v.y_shift_mm + v.half_depth_mm + v.retropulsion_mm + margin
    return (_slab(grid.z_fine, centre - v.height_mm / 2 - margin, centre + v.height_mm / 2 + margin),
            _slab(grid.y, y_lo, y_hi), _slab(grid.x, -v.half_width_mm - margin, v.half_width_mm + margin))


def _body_depth(xx: np.ndarray, yy: np.ndarray, zl: np.ndarray, v: VertebraSpec) -> tuple[np.ndarray, np.ndarray]:
    """Approximate distance (mm) inside the body surface (negative outside), and the superior endplate height."""
    theta, r = np.arctan2(yy, xx), np.hypot(xx, yy)
    radius = _body_radius(theta, v.half_width_mm, v.half_depth_mm, 1.0)
    dome = np.clip(1 - (r / radius) ** 2, 0, 1)
    anterior = np.clip(0.5 - yy / (2 * v.half_depth_mm), 0, 1)
    h = v.height_mm * (1 - v.height_loss if v.deformity == "crush" else 1.0)
    sink = {"wedge": anterior, "biconcave": dome**0.8}.get(v.deformity, 0.0 * dome)
    half_loss = v.height_loss * v.height_mm / 2
    top = (h / 2 - 0.4 * dome - half_loss * sink).astype(np.float32)
    bottom = (-h / 2 + 0.4 * dome + half_loss * sink).astype(np.float32)
    radial = (radius - r).astype(np.float32)[None]
    if v.retropulsion_mm > 0:  # a fragment of the posterior wall pushed into the canal, deepest mid-height
        bulge = np.exp(-(((theta - np.pi / 2) / 0.5) ** 2)).astype(np.float32)
        radial = radial + v.retropulsion_mm * bulge[None] * np.exp(-((zl / (0.3 * v.height_mm)) ** 2))[:, None, None]
    depth = np.minimum(radial, np.minimum(top[None] - zl[:, None, None], zl[:, None, None] - bottom[None]))
    return depth, top


def _draw_arch(block: np.ndarray, xx: np.ndarray, yy: np.ndarray, zl: np.ndarray, v: VertebraSpec,
               rng: np.random.Generator) -> None:
    """Pedicles and lamina as a bony ring around the canal, plus a spinous process sloping downwards."""
    centre, semi_x, semi_y = _canal_geometry(v)
    canal = np.hypot(xx / semi_x, (yy - centre) / semi_y)
    thick = 3.0
    outer = np.hypot(xx / (semi_x + thick), (yy - centre) / (semi_y + thick))
    ring = (canal >= 1) & (outer < 1) & (yy > v.half_depth_mm - 3.0)
    h = v.height_mm
    ring_z = (zl > -0.3 * h) & (zl < 0.45 * h)
    tip = centre + semi_y + thick + 6.0
    spine_y = (yy > centre) & (yy < tip) & (np.abs(xx) < 2.2)
    spine_z = np.abs(zl[:, None, None] - (0.1 * h - 0.45 * (yy - centre))[None]) < 0.2 * h
    bone = (ring[None] & ring_z[:, None, None]) | (spine_y[None] & spine_z)
    bone_hu = 0.5 * (v.trabecular_hu + v.cortical_hu)
    block[bone] = bone_hu + 0.25 * v.texture_sd_hu * rng.standard_normal(int(bone.sum()), dtype=np.float32)


def _marrow(zl: np.ndarray, depth: np.ndarray, top: np.ndarray, v: VertebraSpec, site: SiteProtocol, grid: _Grid,
            rng: np.random.Generator) -> np.ndarray:
    """Trabecular bone: band-passed noise (coarser and vertically elongated in osteoporosis) around a mean HU."""
    dz = site.slice_mm / grid.k
    s = v.texture_sigma_mm
    fine = (s * v.texture_anisotropy / dz, s / site.spacing_xy_mm, s / site.spacing_xy_mm)
    coarse = tuple(2 * f for f in fine)
    noise = rng.standard_normal(depth.shape, dtype=np.float32)
    band = ndimage.gaussian_filter(noise, fine, mode="wrap") / np.float32(_kernel_norm(fine))
    band -= ndimage.gaussian_filter(noise, coarse, mode="wrap") / np.float32(_kernel_norm(coarse))
    band /= np.float32(_BAND_SD)
    marrow = v.trabecular_hu + v.marrow_shift_hu + v.texture_sd_hu * band
    if v.condensation_hu:  # impacted trabeculae 1.5-5 mm under the (possibly depressed) superior endplate
        below_top = top[None] - zl[:, None, None]
        marrow += v.condensation_hu * np.exp(-(((below_top - 3.0) / 1.5) ** 2))
    return marrow


def _draw_lesions(block: np.ndarray, inside: np.ndarray, cortex: np.ndarray, xx: np.ndarray, yy: np.ndarray,
                  zl: np.ndarray, v: VertebraSpec, rng: np.random.Generator) -> None:
    """Thin fracture planes (bright impaction or dark clefts that also break the cortex) and a gas cleft."""
    h = v.height_mm * (1 - v.height_loss if v.deformity == "crush" else 1.0)
    z3 = zl[:, None, None]
    for _ in range(v.fracture_lines):
        tilt, azimuth = rng.uniform(0, 0.6), rng.uniform(0, 2 * np.pi)
        normal = (np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), np.cos(tilt))
        offset = rng.uniform(-0.1, 0.35) * h  # mostly in the upper half, where OVFs begin
        dist = np.abs(normal[0] * xx[None] + normal[1] * yy[None] + normal[2] * (z3 - offset))
        plane = dist < rng.uniform(0.4, 0.6)
        if rng.random() < 0.7:
            block[plane & inside & ~cortex] += 220.0
        else:
            block[plane & inside] = v.trabecular_hu - 60.0
    if v.gas_cleft:  # intravertebral vacuum: a flat gas pocket in the anterior-middle body
        semi = (0.45 * v.half_width_mm, 0.3 * v.half_depth_mm, rng.uniform(1.2, 2.2))
        cy, cz = -0.25 * v.half_depth_mm, rng.uniform(-0.05, 0.15) * h
        cx = rng.uniform(-2.0, 2.0)
        ell = ((xx[None] - cx) / semi[0]) ** 2 + ((yy[None] - cy) / semi[1]) ** 2 + ((z3 - cz) / semi[2]) ** 2
        block[(ell < 1) & inside & ~cortex] = -900.0


# ---------------------------------------------------------------------------------------------- scanner
def _acquire(scene: np.ndarray, grid: _Grid, site: SiteProtocol, rng: np.random.Generator) -> np.ndarray:
    """Slab-average to the slice thickness, blur by the kernel, add correlated noise, calibrate, round."""
    nz, ny, nx = grid.z.size, grid.y.size, grid.x.size
    slabs = scene.reshape(nz, grid.k, ny, nx).mean(axis=1)
    kernel = site.kernel_mm / site.spacing_xy_mm
    image = ndimage.gaussian_filter(slabs, (0.0, kernel, kernel), mode="nearest")
    image += 4.0 * _smooth_field(rng, image.shape, (1.0, 2.0, 2.0))  # faint soft-tissue inhomogeneity
    corr = site.noise_corr_mm / site.spacing_xy_mm
    image += site.noise_sd_hu * _smooth_field(rng, image.shape, (0.0, corr, corr))
    image = site.hu_scale * image + site.hu_offset
    return np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.int16)


def _slab_labels(labels_fine: np.ndarray, k: int, targets: list[int]) -> np.ndarray:
    """A voxel belongs to a label when at least half of its slab does (the partial-volume rule a reader uses)."""
    nz = labels_fine.shape[0] // k
    stacked = labels_fine.reshape(nz, k, *labels_fine.shape[1:])
    out = np.zeros((nz, *labels_fine.shape[1:]), dtype=np.uint8)
    for label in targets:
        out[(stacked == label).mean(axis=1) >= 0.5] = label
    return out


def _to_sitk(array: np.ndarray, grid: _Grid, site: SiteProtocol) -> sitk.Image:
    """Wrap a (z, y, x) array; with `flip_xy` store it reversed along x and y with the matching direction."""
    spacing = (site.spacing_xy_mm, site.spacing_xy_mm, site.slice_mm)
    origin = [float(grid.x[0]), float(grid.y[0]), float(grid.z[0])]
    direction = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    if site.flip_xy:
        array = array[:, ::-1, ::-1]
        origin[0], origin[1] = float(grid.x[-1]), float(grid.y[-1])
        direction = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image
