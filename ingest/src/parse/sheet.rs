//! Spreadsheets (XLSX, XLSM, XLSB, XLS, ODS) with calamine: one page per sheet, in the workbook's
//! order, so a citation's page is the sheet's position and its label is the sheet's name.
//!
//! - Each sheet's used range becomes one Markdown table (first row as the header), rows entirely
//!   empty left out; the sheet name is the page's heading. Cell values are calamine's display
//!   form (numbers as stored, dates as serial numbers unless formatted as text, errors `#DIV/0!`).
//! - A zip-based workbook passes [`super::archive::Archive`]'s checks first (entry count, total
//!   unpacked bytes), since calamine reads the container without limits.
//! - A sheet calamine cannot read is left empty with a warning; the other sheets go on.

use super::archive::Archive;
use super::builder::PageBuilder;
use super::{Format, ParseError, ParsedDocument};
use calamine::Reader;
use std::io::Cursor;

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    if bytes.starts_with(b"PK\x03\x04") {
        Archive::open(bytes, "spreadsheet")?;
    }
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes))
        .map_err(|e| ParseError::Malformed(format!("spreadsheet: {e}")))?;
    let names = book.sheet_names();
    let mut pages = Vec::with_capacity(names.len());
    let mut warnings = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let number = i as u32 + 1;
        let mut page = PageBuilder::new();
        page.heading(name, 1);
        match book.worksheet_range(name) {
            Ok(range) => {
                let rows: Vec<Vec<String>> = range
                    .rows()
                    .map(|row| row.iter().map(|c| c.to_string()).collect::<Vec<_>>())
                    .filter(|row| row.iter().any(|c| !c.trim().is_empty()))
                    .collect();
                page.table(&rows);
            }
            Err(e) => warnings.push(format!("sheet {number} ({name}): {e}")),
        }
        pages.push(page.finish(number, Some(name.clone())));
    }
    if pages.is_empty() {
        return Err(ParseError::Malformed("spreadsheet: the workbook has no sheets".into()));
    }
    // A sheet holding only its name is empty.
    if pages.iter().all(|p| p.text.trim() == p.label.as_deref().unwrap_or("").trim()) {
        return Err(ParseError::NoText);
    }
    super::finish(Format::Spreadsheet, "calamine", pages, warnings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::super::archive::testing::zip_of;
    use super::*;

    /// A minimal XLSX with two sheets, shared and inline strings and numbers.
    fn xlsx() -> Vec<u8> {
        let ct = r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/worksheets/sheet2.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#;
        let rels = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
        let wb = r#"<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Budget" sheetId="1" r:id="rId1"/><sheet name="Staff" sheetId="2" r:id="rId2"/></sheets></workbook>"#;
        let wbrels = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet2.xml"/></Relationships>"#;
        let s1 = r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Item</t></is></c><c r="B1" t="inlineStr"><is><t>Cost</t></is></c></row><row r="3"><c r="A3" t="inlineStr"><is><t>Desk</t></is></c><c r="B3"><v>120.5</v></c></row></sheetData></worksheet>"#;
        let s2 = r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Ada</t></is></c></row></sheetData></worksheet>"#;
        zip_of(&[
            ("[Content_Types].xml", ct.as_bytes()),
            ("_rels/.rels", rels.as_bytes()),
            ("xl/workbook.xml", wb.as_bytes()),
            ("xl/_rels/workbook.xml.rels", wbrels.as_bytes()),
            ("xl/worksheets/sheet1.xml", s1.as_bytes()),
            ("xl/worksheets/sheet2.xml", s2.as_bytes()),
        ])
    }

    #[test]
    fn one_page_per_sheet_rows_as_markdown() {
        let doc = parse(&xlsx()).unwrap();
        assert_eq!(doc.format, Format::Spreadsheet);
        assert_eq!(doc.pages.len(), 2);
        assert_eq!(doc.pages[0].label.as_deref(), Some("Budget"));
        assert_eq!(
            doc.pages[0].text,
            "Budget\n\n| Item | Cost |\n| --- | --- |\n| Desk | 120.5 |\n"
        );
        assert_eq!((doc.pages[1].number, doc.pages[1].text.as_str()), (2, "Staff\n\n| Ada |\n| --- |\n"));
    }

    #[test]
    fn not_a_workbook_is_malformed() {
        let err = parse(&zip_of(&[("x.txt", b"y")])).unwrap_err();
        assert!(matches!(err, ParseError::Malformed(_)), "{err:?}");
    }
}
