"""What lethe returns, as Python objects (dataclasses), and the few helpers
that turn C structures and the library's JSON documents into them.

Text from the library is decoded as UTF-8 with "surrogateescape", so that
bytes that are not UTF-8 (a provenance field is whatever was ingested)
survive a round trip back into the library unchanged.
"""

import json
import os
from dataclasses import dataclass, field, fields
from typing import List, Optional, Tuple

from . import _native as N
from ._native import lib


def text(b):
    """bytes from the library (or None) as str (or None)."""
    return None if b is None else b.decode("utf-8", "surrogateescape")


def arg(s):
    """A str (or bytes, or None) for a const char * argument."""
    if s is None or isinstance(s, bytes):
        return s
    return str(s).encode("utf-8", "surrogateescape")


def path_arg(p):
    """A path (str, bytes or os.PathLike) for a const char * argument."""
    return None if p is None else os.fsencode(p)


def bytes_arg(data, keep):
    """bytes as a (const void *, length) pair for a structure's fields; the
    copy is appended to keep, which must outlive the call."""
    data = bytes(data)
    keep.append(data)
    return N.ctypes.cast(N.ctypes.c_char_p(data), N.ctypes.c_void_p), len(data)


def known(cls, d):
    """The keys of a JSON object that are fields of dataclass cls (a newer
    library may add keys; they are left out rather than refused)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def take_string(lib, ptr):
    """Read a char * the library allocated (a c_void_p; NULL gives None) and
    free it with lethe_free_string."""
    if not ptr.value:
        return None
    try:
        return text(N.ctypes.string_at(ptr.value))
    finally:
        lib.lethe_free_string(ptr)


@dataclass
class Provenance:
    """Where a photo came from and on what basis it may be processed
    (lethe_provenance). Every field may be None (not given); consent not
    given counts as "none"."""

    path: Optional[str] = None          #: the file it was read from
    photo_id: Optional[str] = None      #: the source's own id for the photo
    url: Optional[str] = None
    uploader: Optional[str] = None      #: the account that published it
    source: Optional[str] = None        #: the collection: a site, a dataset
    license: Optional[str] = None
    jurisdiction: Optional[str] = None  #: ISO 3166-1 alpha-2 or 3166-2: GB, DE, US-IL
    consent: Optional[str] = None       #: explicit | public-license | none | withdrawn
    collected_at: Optional[str] = None  #: ISO 8601 date or date-time

    def _to_c(self):
        """A lethe_provenance pointing into bytes this returns too (keep
        both alive for the call)."""
        keep = {f.name: arg(getattr(self, f.name)) for f in fields(Provenance)}
        return N.lethe_provenance(**keep), keep

    @classmethod
    def _from_c(cls, p):
        return cls(**{f.name: text(getattr(p, f.name)) for f in fields(Provenance)})


@dataclass
class ProvenanceRecord(Provenance):
    """A provenance record as the store holds it (lookup): the fields of
    Provenance, "" where not given, and when it was recorded."""

    added_at: Optional[str] = None


@dataclass
class Face:
    """One face found in a photo (lethe_face): coordinates in the photo's
    original pixels."""

    box: Tuple[float, float, float, float]  #: x, y, w, h
    score: float                            #: detector confidence in [0, 1]
    landmarks: Optional[List[Tuple[float, float]]]  #: 68 (x, y), or None if not computed
    descriptor: Optional[Tuple[float, ...]]  #: 128 floats, or None if not computed
    crop_w: int                             #: the region the landmarks were found in
    crop_h: int

    @classmethod
    def _from_c(cls, f):
        return cls(
            box=tuple(f.box),
            score=f.score,
            landmarks=[tuple(p) for p in f.landmarks] if f.has_landmarks else None,
            descriptor=tuple(f.descriptor) if f.has_descriptor else None,
            crop_w=f.crop_w,
            crop_h=f.crop_h)


@dataclass
class Analysis:
    """What one photo holds (lethe_analysis): its size in original pixels
    after EXIF orientation, and its faces, highest score first."""

    width: int
    height: int
    faces: List[Face] = field(default_factory=list)


@dataclass
class IngestStats:
    """Counts of an ingest (lethe_ingest_stats; see lethe.h for each)."""

    seen: int = 0
    added: int = 0
    duplicates: int = 0
    provenance: int = 0
    faces: int = 0
    templates: int = 0
    refused: int = 0
    withdrawn: int = 0
    no_face: int = 0
    errors: int = 0
    bytes: int = 0
    opted_out: int = 0
    opted_out_faces: int = 0
    uncommitted: int = 0

    @classmethod
    def _from_c(cls, s):
        return cls(**{f.name: getattr(s, f.name) for f in fields(cls)})


@dataclass
class IngestIssue:
    """An input an ingest could not take (reported through on_error)."""

    input: str    #: the file, name or "descriptor"
    line: int     #: the line given with it, or 0
    message: str  #: why


@dataclass
class Match:
    """A search result (lethe_match): a face, its distance, its photo and
    the first of the photo's provenance records."""

    distance: float        #: Euclidean, in descriptor space
    query: int             #: which query this answers (0 for a single one)
    face: int              #: the face's id in the store
    photo: str             #: SHA-256 of the photo's bytes, hex
    box: Tuple[float, float, float, float]  #: x, y, w, h in the photo's pixels
    provenance_count: int  #: provenance records held for the photo
    provenance: Provenance  #: the first of them
    fmr: float = 1.0       #: false-match rate at this distance (calibration table)
    strangers: float = 0.0  #: other people expected this close in this store
    gallery: int = 0       #: templates in the store when it searched
    tier: str = "none"     #: strong, moderate, weak, none or uncalibrated (the manual)

    @classmethod
    def _from_c(cls, m):
        name = lib.lethe_tier_name(m.tier)
        return cls(distance=m.distance, query=m.query, face=m.face, photo=text(m.photo),
                   box=tuple(m.box), provenance_count=m.provenance_count,
                   provenance=Provenance._from_c(m.prov), fmr=m.fmr, strangers=m.strangers,
                   gallery=m.gallery, tier=name.decode() if name else "?")


@dataclass
class VerifyResult:
    """A 1:1 verification (lethe_verify_result): is the face the person of
    the photos selected? Compared with every template of those photos."""

    match: bool           #: distance <= threshold
    distance: float       #: to the nearest template of the selection
    threshold: float      #: the threshold applied
    face: int             #: the nearest template's face id
    photo: str            #: its photo's SHA-256, hex
    templates: int        #: templates compared
    photos: int           #: photos selected

    @classmethod
    def _from_c(cls, r):
        return cls(match=bool(r.match), distance=r.distance, threshold=r.threshold,
                   face=r.face, photo=text(r.photo), templates=r.templates, photos=r.photos)


@dataclass
class LookupPhoto:
    """One photo a lookup found."""

    photo: str            #: SHA-256 of its bytes, hex
    kind: str             #: "photo" or "descriptor"
    status: str
    faces: int
    templates: int        #: faces that have a template
    width: Optional[int] = None   #: None when unknown (descriptors)
    height: Optional[int] = None
    provenance: List[ProvenanceRecord] = field(default_factory=list)


@dataclass
class LookupResult:
    """The answer of Store.lookup: what the store holds for one value."""

    lookup: str           #: "uploader", "url", "photo-id" or "file"
    photos: List[LookupPhoto] = field(default_factory=list)

    @classmethod
    def _from_json(cls, doc):
        d = json.loads(doc)
        photos = []
        for p in d["photos"]:
            prov = [ProvenanceRecord(**known(ProvenanceRecord, r)) for r in p.get("provenance", [])]
            photos.append(LookupPhoto(photo=p["photo"], kind=p["kind"], status=p["status"],
                                      faces=p["faces"], templates=p["templates"],
                                      width=p.get("width"), height=p.get("height"),
                                      provenance=prov))
        return cls(lookup=d["lookup"], photos=photos)


@dataclass
class MatchedPhoto:
    """A photo an erasure touched (or, dry run, would touch)."""

    photo: str            #: SHA-256 hex
    status: str
    faces: int
    url: str              #: its first provenance record's URL ("" if none)
    path: str             #: ... and path
    distance: Optional[float] = None  #: by face: the nearest face's distance


@dataclass
class ForgetResult:
    """What an erasure did (lethe_forget_result), with its signed receipt
    (None on a dry run) and the photos touched."""

    photos: int
    provenance: int
    faces: int
    templates: int
    undated_kept: int     #: photos kept by collected_before for carrying no date
    digest_before: str
    digest_after: str
    receipt_hash: Optional[str]  #: BLAKE2b-256 of the receipt; None on a dry run
    wide: Optional[str]   #: why confirmation is needed (a ConfirmError's result)
    receipt: Optional[str] = None
    matched: List[MatchedPhoto] = field(default_factory=list)

    @classmethod
    def _from_c(cls, r, receipt, matched):
        return cls(photos=r.photos, provenance=r.provenance, faces=r.faces,
                   templates=r.templates, undated_kept=r.undated_kept,
                   digest_before=text(r.digest_before), digest_after=text(r.digest_after),
                   receipt_hash=text(r.receipt_hash) or None, wide=text(r.wide),
                   receipt=receipt,
                   matched=[MatchedPhoto(**known(MatchedPhoto, m)) for m in json.loads(matched)] if matched else [])


@dataclass
class LogHead:
    """The audit log's last entry: its number and hash."""

    seq: int
    hash: str


@dataclass
class PolicyDecision:
    """lethe_policy_check: may a template be computed, and which rule said so."""

    allowed: bool
    rule: Optional[str]


@dataclass
class FullDigest:
    """lethe_store_digest_full: the digest recomputed from every record, and
    whether it equals the one kept up to date."""

    digest: str
    matches: bool


@dataclass
class KeyInfo:
    """An API key as the store lists it (lethe_key_info): never the key."""

    id: int
    name: str
    roles: List[str]             #: of admin, ingest, search, audit, erasure
    rate_per_minute: int         #: 0: no limit
    daily_quota: int             #: 0: no limit
    created_at: str
    revoked_at: Optional[str]    #: None while valid

    @classmethod
    def _from_c(cls, k):
        buf = N.ctypes.create_string_buffer(N.ROLES_TEXT)
        lib.lethe_roles_format(k.roles, buf)
        roles = text(buf.value)
        return cls(id=k.id, name=text(k.name), roles=roles.split(",") if roles else [],
                   rate_per_minute=k.rate_per_minute, daily_quota=k.daily_quota,
                   created_at=text(k.created_at), revoked_at=text(k.revoked_at) or None)


@dataclass
class ModelInfo:
    """A model that computed templates of the store (lethe_model_info)."""

    id: int                      #: its number in this store
    name: str
    version: str
    weights: str                 #: SHA-256 of its weights, hex ("" if not given)
    precision: str               #: the descriptor's precision
    first_used: str
    retired_at: Optional[str]    #: None unless retired
    templates: int               #: its templates held now
    faces: int                   #: faces it analysed
    shipped: bool                #: the model of this build

    @property
    def state(self):
        """"retired", "current" (the shipped model) or "other", as the CLI says."""
        return "retired" if self.retired_at else "current" if self.shipped else "other"

    @classmethod
    def _from_c(cls, m):
        return cls(id=m.id, name=text(m.model.name), version=text(m.model.version),
                   weights=text(m.model.weights), precision=text(m.model.precision),
                   first_used=text(m.first_used), retired_at=text(m.retired_at) or None,
                   templates=m.templates, faces=m.faces, shipped=bool(m.shipped))


@dataclass
class RestoreResult:
    """What a restore did (lethe_restore_result)."""

    photos: int                  #: photos in the restored store
    dropped_erased: int          #: in the backup, erased since: never brought back
    dropped_newer: int           #: in the live store, not in the backup (discard_newer)
    templates_dropped: int       #: templates the current policy refuses
    receipts_carried: int        #: receipts issued after the backup (from the keyring)
    digest: str

    @classmethod
    def _from_c(cls, r):
        return cls(photos=r.photos, dropped_erased=r.dropped_erased,
                   dropped_newer=r.dropped_newer, templates_dropped=r.templates_dropped,
                   receipts_carried=r.receipts_carried, digest=text(r.digest))


@dataclass
class PurposeCount:
    """How often searches for one stated purpose returned a photo."""

    purpose: str
    searches: int
    last: str                    #: the latest of them, ISO 8601 UTC


@dataclass
class SubjectPhoto:
    """A photo a subject lookup found: what a person may see of it
    (lethe_subject_photo): its provenance (with the consent basis), whether
    a template exists, and how often searches returned it, by purpose
    (never who searched)."""

    photo: str                   #: SHA-256 of its bytes, hex
    kind: str                    #: "photo" or "descriptor"
    status: str                  #: "analysed", "refused", "withdrawn"
    added_at: str
    faces: int
    templates: int               #: 0: no template exists
    provenance: List[Provenance] = field(default_factory=list)
    purposes: List[PurposeCount] = field(default_factory=list)

    @classmethod
    def _from_c(cls, p):
        return cls(photo=text(p.photo), kind=text(p.kind), status=text(p.status),
                   added_at=text(p.added_at), faces=p.faces, templates=p.templates,
                   provenance=[Provenance._from_c(p.prov[i]) for i in range(p.nprov)],
                   purposes=[PurposeCount(purpose=text(p.purposes[i].purpose),
                                          searches=p.purposes[i].searches,
                                          last=text(p.purposes[i].last))
                             for i in range(p.npurposes)])


REQUEST_KINDS = ("uploader", "url", "photo-id", "file", "face")


@dataclass
class RequestInfo:
    """A data-subject request (lethe_request_info)."""

    number: int                  #: the operator's handle
    action: str                  #: "erase" or "optout"
    by: str                      #: uploader, url, photo-id, file, face
    status: str                  #: "pending", "done" or "denied"
    filed_at: str
    decided_at: Optional[str]
    decided_by: Optional[str]    #: "auto", or who decided ("key:5")
    note: Optional[str]          #: why denied, or why not approved at once
    photos: int                  #: erased (done)
    faces: int
    templates: int
    receipt_hash: Optional[str]  #: the receipt's hash (done)
    selector: Optional[str] = None  #: what it names (listing, pending only)
    receipt: Optional[str] = None   #: the signed receipt (status, once done)

    @classmethod
    def _from_c(cls, q, receipt=None):
        return cls(number=q.number, action="optout" if q.action == N.REQUEST_OPTOUT else "erase",
                   by=REQUEST_KINDS[q.by] if 0 <= q.by < len(REQUEST_KINDS) else str(q.by),
                   status=text(q.status), filed_at=text(q.filed_at),
                   decided_at=text(q.decided_at) or None, decided_by=text(q.decided_by) or None,
                   note=text(q.note) or None, photos=q.photos, faces=q.faces,
                   templates=q.templates, receipt_hash=text(q.receipt_hash) or None,
                   selector=text(q.selector), receipt=receipt)
