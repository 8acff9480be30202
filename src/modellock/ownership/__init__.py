"""Proof of ownership: is a suspect model derived from the owner's locked model?

    from modellock.ownership import build_evidence, load_suspect, verify, Evidence
    evidence = build_evidence(LockedModel.from_pretrained("locked/"), Key.load("key.toml"), open_source("data/"),
                              out="owner.evidence")
    result = verify(Evidence.load("owner.evidence"), load_suspect("http://host:8000", evidence))
    result["verdict"]   # "derived" or "independent"

Methods: SAC-w and SAC-m (sample correlation, ``correlation.py``, on the sets of ``samples.py``) and the
key-feature and key-response tests (``key_feature.py``: does the suspect read the class better under the key's
edit; does the key's edit move its answers more than a wrong key's, whatever its classes), each calibrated on
independent models (``calibration.py``), and the watermark test of a service's keyed wrong answers
(``watermark.py``: ``verify(..., watermark=load_watermark(DIR))``). The record is ``record.py``; suspects (model
folders, weights files, timm/torchvision names, service URLs) ``suspects.py``.
"""

from .evidence import build_evidence
from .record import Evidence
from .suspects import HttpSuspect, ModelSuspect, Suspect, load_suspect
from .verify import EXIT_DERIVED, EXIT_INDEPENDENT, format_result, verify
from .watermark import WatermarkRecord, load_watermark, watermark_test

__all__ = ["build_evidence", "verify", "load_suspect", "format_result", "Evidence", "Suspect", "ModelSuspect",
           "HttpSuspect", "EXIT_DERIVED", "EXIT_INDEPENDENT", "load_watermark", "watermark_test", "WatermarkRecord"]
