"""Report sectioning and MGCA cleaning on realistic MIMIC-CXR report texts."""
from interlace.domains.medical.data.reports import clean_report, report_text, section_report

FULL = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.  Nodule measures 1.5 cm.

 IMPRESSION:

 No acute cardiopulmonary process.
"""

NUMBERED = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PORTABLE AP)

 INDICATION:  ___-year-old male intubated, eval ETT.

 IMPRESSION:

 1.  Endotracheal tube terminates 4 cm above the carina.
 2.  Moderate right pleural effusion, increased.
 3.  Ok.
"""

EMPTY_FINDINGS = """ FINAL REPORT
 EXAMINATION:  CHEST
 FINDINGS:

 IMPRESSION:  Low lung volumes with bibasilar atelectasis.
"""

ONLY_INDICATION = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  History: ___M with cough and fever, evaluate for pneumonia.
"""

NO_HEADERS = """PA and lateral views of the chest.

Lungs are clear without focal consolidation.  Heart size is normal.
"""


def test_sections_of_a_full_report():
    sections = section_report(FULL)
    assert sections["findings"].startswith("There is no focal consolidation")
    assert sections["findings"].endswith("Nodule measures 1.5 cm.")
    assert sections["impression"] == "No acute cardiopulmonary process."
    assert sections["last_paragraph"] == "No acute cardiopulmonary process."
    assert report_text(FULL).startswith("No acute cardiopulmonary process. There is no")


def test_empty_findings_section_gives_empty_string_not_crash():
    sections = section_report(EMPTY_FINDINGS)
    assert sections["findings"] == ""
    assert sections["impression"] == "Low lung volumes with bibasilar atelectasis."
    assert clean_report(EMPTY_FINDINGS) == ["low lung volumes with bibasilar atelectasis"]


def test_report_with_only_indication_is_rejected():
    # The indication is the clinical question, never a fallback for findings.
    assert section_report(ONLY_INDICATION) == dict(findings="", impression="",
                                                   last_paragraph="")
    assert report_text(ONLY_INDICATION) == ""
    assert clean_report(ONLY_INDICATION) == []


def test_report_without_headers_falls_back_to_last_paragraph():
    assert report_text(NO_HEADERS).startswith("Lungs are clear")
    assert clean_report(NO_HEADERS) == ["lungs are clear without focal consolidation",
                                        "heart size is normal"]


def test_numbered_impression_is_split_and_one_word_items_dropped():
    assert clean_report(NUMBERED) == [
        "endotracheal tube terminates 4 cm above the carina",
        "moderate right pleural effusion increased",
    ]  # "3. Ok." has a single token and is dropped


def test_cleaning_lowercases_keeps_word_characters_and_decimals_do_not_split():
    sentences = clean_report(FULL)
    assert sentences[0] == "no acute cardiopulmonary process"
    assert "there is no focal consolidation pleural effusion or pneumothorax" in sentences
    assert "nodule measures 1 5 cm" in sentences  # "1.5" is not a numbered item
    assert all(s == s.lower() and "," not in s for s in sentences)


def test_short_reports_are_rejected():
    assert clean_report("IMPRESSION: Normal.") == []
    assert clean_report("IMPRESSION: No change.") == []   # 2 tokens < 3
    assert clean_report("IMPRESSION: No acute process.") == ["no acute process"]
    assert clean_report("") == []


def test_deidentification_placeholders_are_not_tokens():
    # "___ ___" has no tokens, so 2 tokens remain: rejected.
    assert clean_report("IMPRESSION: ___ ___.  Lungs clear.") == []
    assert clean_report("IMPRESSION: Compared to ___, lungs are clear.") == [
        "compared to lungs are clear"]
