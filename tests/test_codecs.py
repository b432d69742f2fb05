"""Compressed pixel data: every codec decodes to the uncompressed HU, lossy series are flagged.

A small CT series is written uncompressed by ctsurv's writer (int16, RescaleIntercept -1024),
read as the reference, then re-encoded slice by slice and read again with ``read_ct``:

* lossless (HU equal exactly): RLE Lossless, JPEG-LS Lossless and JPEG 2000 Lossless
  (``Dataset.compress``: pydicom / pylibjpeg-rle, pyjpegls, pylibjpeg-openjpeg), and JPEG
  Lossless SV1 (process 14), encoded by GDCM (SimpleITK) since pydicom has no JPEG encoder;
* lossy (HU within a stated tolerance, series flagged): JPEG-LS near-lossless with NEAR = 3
  (|error| <= 3 stored values by construction), JPEG 2000 at compression ratio 10 with
  ``LossyImageCompression = 01``, and JPEG baseline (8-bit, RescaleSlope 8, quality 100) encoded by Pillow.

A codec is skipped only when its *encoder* is missing here, with the reason. Missing decoders
(a JPEG XL file no installed package decodes; JPEG 2000 with pylibjpeg-openjpeg and GDCM
hidden) must raise a DicomSeriesError naming the patient, the series and the transfer syntax.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from ctsurv.exceptions import DicomSeriesError
from ctsurv.io import read_ct, read_dicom_ct, write_ct_series
from ctsurv.io.dicom import _lossy

PID = "CODEC-1"
SHAPE, SPACING = (5, 40, 36), (2.5, 0.7, 0.7)
#: JPEG 2000 at ratio 10 on this noisy phantom (noise sd 30 HU): mean |error| measured ~21 HU
J2K_MEAN_TOL, J2K_MAX_TOL = 35.0, 250.0
#: JPEG baseline, quality 100 on 8-bit stored values with RescaleSlope 8: the 8-HU quantisation
#: (<= 4 HU) plus at most 2 stored levels of DCT error
JPEG8_SLOPE, JPEG8_MAX_TOL = 8.0, 4.0 + 2 * 8.0


def _volume() -> np.ndarray:
    rng = np.random.default_rng(7)
    _, j, i = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    body = 1300.0 * np.exp(-((j - 20) ** 2 + (i - 18) ** 2) / 150.0)
    return np.clip(np.rint(-1000.0 + body + rng.normal(0.0, 30.0, SHAPE)), -1024, 1500).astype(np.float32)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("codecs") / "raw"
    write_ct_series(_volume(), SPACING, folder, PID, uid_seed=4)
    ref = read_ct(folder)
    np.testing.assert_array_equal(ref.hu, _volume())  # the uncompressed reference is exact
    assert ref.notes == ()
    return folder, ref.hu


def _recode(src: Path, dst: Path, encode) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("CT_*.dcm")):
        ds = pydicom.dcmread(f)
        encode(ds)
        ds.save_as(dst / f.name, enforce_file_format=True)
    return dst


def _compress(syntax, **kw):
    def encode(ds):
        ds.compress(syntax, generate_instance_uid=False, **kw)
    return encode


def _as_jpeg_xl(path: Path) -> None:
    """Relabel a file written as HTJ2K Lossless (``...4.201``) as JPEG XL Lossless (``...4.110``).

    pydicom refuses to write a transfer syntax it does not know, so the (equally long) UID is
    patched in the file bytes; pydicom still reads the file.
    """
    data = path.read_bytes()
    assert data.count(b"1.2.840.10008.1.2.4.201\0") == 1
    path.write_bytes(data.replace(b"1.2.840.10008.1.2.4.201\0", b"1.2.840.10008.1.2.4.110\0"))


def _need_encoder(syntax) -> None:
    from pydicom.pixels import get_encoder

    try:
        enc = get_encoder(syntax)
    except NotImplementedError as exc:
        pytest.skip(f"no pydicom encoder for {syntax.name}: {exc}")
    if not enc.is_available:
        pytest.skip(f"encoder for {syntax.name} unavailable here: {enc.missing_dependencies}")


def _gdcm_jpeg_lossless(ds) -> None:
    """Re-encode one slice as JPEG Lossless SV1 with GDCM (SimpleITK) and transplant the stream."""
    import SimpleITK as sitk

    stored = ds.pixel_array.astype(np.int16)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    buf = Path(ds.filename).with_suffix(".gdcm-tmp")
    writer.SetFileName(str(buf))
    writer.SetUseCompression(True)
    writer.SetCompressor("JPEG")
    writer.Execute(sitk.GetImageFromArray(stored[None]))
    coded = pydicom.dcmread(buf)
    buf.unlink()
    if coded.file_meta.TransferSyntaxUID != uid.JPEGLosslessSV1:
        pytest.skip(f"GDCM wrote {coded.file_meta.TransferSyntaxUID.name}, not JPEG Lossless SV1")
    ds.PixelData = coded.PixelData
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = uid.JPEGLosslessSV1


LOSSLESS = {
    "RLE Lossless": (uid.RLELossless, {}),
    "JPEG-LS Lossless": (uid.JPEGLSLossless, {}),
    "JPEG 2000 Lossless": (uid.JPEG2000Lossless, {}),
}


@pytest.mark.parametrize("name", list(LOSSLESS))
def test_lossless_codecs_decode_exactly(raw, tmp_path, name):
    folder, ref = raw
    syntax, kw = LOSSLESS[name]
    _need_encoder(syntax)
    coded = _recode(folder, tmp_path / "coded", _compress(syntax, **kw))
    assert pydicom.dcmread(next(coded.glob("*.dcm")), stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    ct = read_ct(coded)
    np.testing.assert_array_equal(ct.hu, ref)
    assert ct.notes == ()  # lossless: no lossy note


def test_jpeg_lossless_from_gdcm_decodes_exactly(raw, tmp_path):
    folder, ref = raw
    coded = _recode(folder, tmp_path / "jpeg-ll", _gdcm_jpeg_lossless)
    h = pydicom.dcmread(next(coded.glob("*.dcm")), stop_before_pixels=True)
    assert h.file_meta.TransferSyntaxUID == uid.JPEGLosslessSV1
    ct = read_ct(coded)
    np.testing.assert_array_equal(ct.hu, ref)
    assert ct.notes == ()


def test_jpeg_ls_near_lossless_is_flagged_and_bounded(raw, tmp_path):
    folder, ref = raw
    _need_encoder(uid.JPEGLSNearLossless)
    coded = _recode(folder, tmp_path / "jls", _compress(uid.JPEGLSNearLossless, jls_error=3))
    read = read_dicom_ct(coded, PID)
    err = np.abs(read.volume.hu - ref)
    assert 0 < err.max() <= 3.0  # NEAR = 3 bounds every stored value's error; slope 1
    assert read.lossy and "1.2.840.10008.1.2.4.81" in read.lossy
    assert any(n.startswith("lossy compression: 5 of 5 slices") for n in read.volume.notes)


def test_jpeg2000_lossy_within_tolerance_and_flagged(raw, tmp_path):
    folder, ref = raw
    _need_encoder(uid.JPEG2000)

    def encode(ds):
        ds.compress(uid.JPEG2000, generate_instance_uid=False, j2k_cr=[10])
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = 10
        ds.LossyImageCompressionMethod = "ISO_15444_1"

    coded = _recode(folder, tmp_path / "j2k", encode)
    ct = read_ct(coded)
    err = np.abs(ct.hu - ref)
    assert 0 < err.mean() <= J2K_MEAN_TOL and err.max() <= J2K_MAX_TOL
    (note,) = ct.notes
    assert "lossy compression" in note and "LossyImageCompression 01" in note and "ratio 10" in note


def test_jpeg_baseline_8bit_within_tolerance_and_flagged(raw, tmp_path):
    folder, ref = raw
    pil = pytest.importorskip("PIL.Image", reason="Pillow encodes the JPEG baseline stream")

    def encode(ds):
        hu = ds.pixel_array.astype(np.float64) + float(ds.RescaleIntercept)
        stored = np.clip(np.rint((hu + 1024.0) / JPEG8_SLOPE), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        pil.fromarray(stored, mode="L").save(out, format="JPEG", quality=100, subsampling=0)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.RescaleSlope, ds.RescaleIntercept = f"{JPEG8_SLOPE:g}", "-1024"
        ds.PixelData = encapsulate([out.getvalue()])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit

    coded = _recode(folder, tmp_path / "jpeg8", encode)
    ct = read_ct(coded)
    assert np.abs(ct.hu - ref).max() <= JPEG8_MAX_TOL
    (note,) = ct.notes
    assert "lossy transfer syntax JPEG Baseline" in note and "HU are approximate" in note


def test_lossy_flag_rules():
    from pydicom.dataset import Dataset, FileMetaDataset

    def ds(syntax, flag=None):
        d = Dataset()
        d.file_meta = FileMetaDataset()
        d.file_meta.TransferSyntaxUID = syntax
        if flag is not None:
            d.LossyImageCompression = flag
        return d

    assert _lossy(ds(uid.ExplicitVRLittleEndian)) == ""
    assert "01" in _lossy(ds(uid.ExplicitVRLittleEndian, "01"))  # decompressed after a lossy step
    assert _lossy(ds(uid.JPEG2000)) and _lossy(ds(uid.JPEG2000, "00")) == ""  # .91 can be reversible
    assert _lossy(ds(uid.JPEGBaseline8Bit, "00"))  # DCT is lossy whatever the tag says
    assert _lossy(ds(uid.JPEG2000Lossless)) == "" and _lossy(ds(uid.RLELossless)) == ""


# ------------------------------------------------------------------------------ missing decoders
def test_undecodable_transfer_syntax_names_patient_series_and_syntax(raw, tmp_path):
    """JPEG XL (2023): neither pydicom 3.0's plugins nor GDCM decode it."""
    folder, _ = raw
    _need_encoder(uid.JPEG2000Lossless)

    def encode(ds):
        ds.compress(uid.JPEG2000Lossless, generate_instance_uid=False)
        ds.file_meta.TransferSyntaxUID = uid.HTJ2KLossless  # relabelled as JPEG XL below

    coded = _recode(folder, tmp_path / "jxl", encode)
    for f in coded.glob("*.dcm"):
        _as_jpeg_xl(f)
    series = pydicom.dcmread(next(coded.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    with pytest.raises(DicomSeriesError) as err:
        read_ct(coded, patient_id=PID)
    msg = str(err.value)
    assert msg.startswith(f"patient {PID} (series {series}): cannot decode the pixel data of")
    assert "1.2.840.10008.1.2.4.110" in msg and "no decoder for this transfer syntax" in msg
    assert "\n" not in msg and len(msg) < 1000  # one line, not a traceback


def test_missing_decoder_package_is_named(raw, tmp_path, monkeypatch):
    """JPEG 2000 as if pylibjpeg-openjpeg (and Pillow, GDCM) were not installed."""
    import importlib.util

    from pydicom.pixels import get_decoder

    folder, _ = raw
    _need_encoder(uid.JPEG2000Lossless)
    coded = _recode(folder, tmp_path / "j2k-ll", _compress(uid.JPEG2000Lossless))
    decoder = get_decoder(uid.JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable",
                        {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0")})
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openjpeg" else find_spec(name, *a))
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # no GDCM fallback either
    with pytest.raises(DicomSeriesError) as err:
        read_ct(coded, patient_id=PID)
    msg = str(err.value)
    assert msg.startswith(f"patient {PID} (series ")
    assert "JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)" in msg
    assert "pip install pylibjpeg-openjpeg" in msg


# ------------------------------------------------------------------------------ in the manifest
def test_manifest_flags_lossy_and_excludes_undecodable(tmp_path):
    from ctsurv.prepare import prepare_cohort
    from ctsurv.preprocess import PreprocessConfig
    from ctsurv.synthetic import write_phantom_cohort

    _need_encoder(uid.JPEG2000)
    write_phantom_cohort(tmp_path, n_patients=2, seed=3)
    images = tmp_path / "images"
    for pid, encode in (("PHANTOM-001", _compress(uid.JPEG2000, j2k_cr=[8])),
                        ("PHANTOM-002", _compress(uid.RLELossless))):
        src = images / pid
        for f in sorted(src.glob("CT_*.dcm")):
            ds = pydicom.dcmread(f)
            encode(ds)
            ds.save_as(f, enforce_file_format=True)
    f = sorted((images / "PHANTOM-002").glob("CT_*.dcm"))[3]
    ds = pydicom.dcmread(f)
    ds.file_meta.TransferSyntaxUID = uid.HTJ2KLossless
    ds.save_as(f)
    _as_jpeg_xl(f)  # one slice no installed package decodes
    m = prepare_cohort(images, tmp_path / "clinical.csv", tmp_path / "prep", workers=1, progress=False,
                       config=PreprocessConfig(size=64))
    back = pd.read_csv(tmp_path / "prep" / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")
    m = m.set_index("patient_id")
    assert m.loc["PHANTOM-001", "status"] == "ok" and bool(back.loc["PHANTOM-001", "lossy"])
    assert "lossy compression" in m.loc["PHANTOM-001", "reason"]
    assert m.loc["PHANTOM-002", "status"] == "excluded"
    reason = m.loc["PHANTOM-002", "reason"]
    assert reason.startswith("patient PHANTOM-002 (series ") and "1.2.840.10008.1.2.4.110" in reason
    assert f.name in reason
