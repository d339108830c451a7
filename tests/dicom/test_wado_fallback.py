"""download_series when a PACS refuses ``transfer-syntax=*``: asked again in the PACS's default syntax; any other
failure, or a refusal after instances arrived, is not hidden. The PACS is a test double (named as such)."""

from __future__ import annotations

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file

from medicosam_app.dicom.wado import STORED_TRANSFER_SYNTAX, download_series


class PacsDouble:
    """Answers iter_series like dicomweb_client: refuses the stored syntax with ``status``, serves the default."""

    base_url = "http://pacs.double/dicom-web"

    def __init__(self, status: int, fail_after: int = 0) -> None:
        self.status, self.fail_after, self.asked = status, fail_after, []

    def iter_series(self, study_uid, series_uid, media_types=None):
        self.asked.append(media_types)
        instance = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        for _ in range(self.fail_after):
            yield instance
        if media_types == STORED_TRANSFER_SYNTAX:
            response = requests.Response()
            response.status_code = self.status
            raise requests.HTTPError(f"{self.status} refused", response=response)
        yield instance
        yield instance


@pytest.mark.parametrize("status", [400, 406, 415])
def test_a_refused_stored_syntax_is_asked_again_in_the_default(tmp_path, status):
    pacs = PacsDouble(status)
    assert download_series(pacs, "1.2", "1.2.3", tmp_path) == 2
    assert pacs.asked == [STORED_TRANSFER_SYNTAX, None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00001.dcm", "00002.dcm"]


def test_other_failures_and_late_refusals_are_raised(tmp_path):
    with pytest.raises(requests.HTTPError):
        download_series(PacsDouble(503), "1.2", "1.2.3", tmp_path / "a")
    with pytest.raises(requests.HTTPError):  # half a series must not be completed in another syntax
        download_series(PacsDouble(406, fail_after=1), "1.2", "1.2.3", tmp_path / "b")
