//! Optical character recognition with Tesseract 5 (libtesseract + leptonica from the
//! distribution: Debian `tesseract-ocr`, `tesseract-ocr-eng`), for PDF pages without a text layer
//! (rendered by PDFium) and for image files (PNG, JPEG, TIFF, decoded by leptonica from memory).
//!
//! - **Bound at run time** through Tesseract's C API (`capi.h`) with libloading: the few calls
//!   used are declared here, so building hearth needs no Tesseract headers and no bindgen, and a
//!   machine without Tesseract still parses everything that needs no OCR (the reason is reported
//!   where OCR would have helped).
//! - **Before confinement**: the worker loads the libraries and initializes the engine
//!   ([`OcrEngine::init`], which reads the languages' `traineddata` from Tesseract's data
//!   directory, `/usr/share/tesseract-ocr/5/tessdata` on Debian) before Landlock; after that
//!   Tesseract opens nothing. It is only loaded for the formats that may need it (PDF, images).
//! - **No threads**: libtesseract is built with OpenMP and the worker may create no thread
//!   (`RLIMIT_NPROC` 0). `OMP_THREAD_LIMIT=1` is set just before libgomp loads (it reads it then)
//!   and removed right after, so the worker's environment stays empty.
//! - **Its own time budget** ([`OcrEngine::budget`]): no page is started once the budget is
//!   spent; those pages stay empty with a warning instead of failing the document. The worker's
//!   CPU and wall-clock limits still bound the whole parse, so the budget should stay below them.
//! - Languages come from the configuration (`[ingest] ocr_languages`, joined `eng+deu` for
//!   Tesseract); a language whose data is missing fails [`OcrEngine::init`] with a clear message.

use super::pdfium::GrayImage;
use libloading::{Library, Symbol};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::{Duration, Instant};

/// Sonames tried, in order.
const TESSERACT_LIBS: [&str; 2] = ["libtesseract.so.5", "libtesseract.so"];
const LEPTONICA_LIBS: [&str; 4] = ["liblept.so.5", "libleptonica.so.6", "libleptonica.so", "liblept.so"];

type Api = *mut c_void;
type Pix = *mut c_void;

/// The C functions used, resolved once.
struct Calls {
    create: unsafe extern "C" fn() -> Api,
    init3: unsafe extern "C" fn(Api, *const c_char, *const c_char) -> c_int,
    set_image2: unsafe extern "C" fn(Api, Pix),
    set_resolution: unsafe extern "C" fn(Api, c_int),
    recognize: unsafe extern "C" fn(Api, *mut c_void) -> c_int,
    utf8_text: unsafe extern "C" fn(Api) -> *mut c_char,
    delete_text: unsafe extern "C" fn(*const c_char),
    end: unsafe extern "C" fn(Api),
    delete: unsafe extern "C" fn(Api),
    pix_read_mem: unsafe extern "C" fn(*const u8, usize) -> Pix,
    pix_destroy: unsafe extern "C" fn(*mut Pix),
}

/// A Tesseract instance with its budget.
pub struct OcrEngine {
    calls: Calls,
    api: Api,
    languages: String,
    budget: Duration,
    spent: Cell<Duration>,
    // Last: the libraries outlive every call above.
    _libs: (Library, Library),
}

impl std::fmt::Debug for OcrEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcrEngine")
            .field("languages", &self.languages)
            .field("budget", &self.budget)
            .finish()
    }
}

fn open_first(names: &[&str]) -> Result<Library, String> {
    let mut last = String::new();
    for name in names {
        // SAFETY: loading the distribution's Tesseract/leptonica runs their initializers, which
        // have no preconditions.
        match unsafe { Library::new(name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

fn sym<T: Copy>(lib: &Library, name: &str) -> Result<T, String> {
    // SAFETY: each symbol is read with the signature capi.h / allheaders.h declare for it.
    let s: Symbol<'_, T> = unsafe { lib.get(name.as_bytes()) }.map_err(|e| format!("{name}: {e}"))?;
    Ok(*s)
}

impl OcrEngine {
    /// Loads libtesseract and starts it for `languages` (Tesseract codes: `eng`, `deu`...) from
    /// its default data directory.
    pub fn init(languages: &[String], budget: Duration) -> Result<Self, String> {
        let langs = if languages.is_empty() { "eng".to_owned() } else { languages.join("+") };
        if langs.is_empty() || langs.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '+')) {
            return Err(format!("invalid OCR language list {langs:?}"));
        }
        // libgomp reads this once, when libtesseract pulls it in: OCR then starts no thread.
        std::env::set_var("OMP_THREAD_LIMIT", "1");
        let tess = open_first(&TESSERACT_LIBS);
        std::env::remove_var("OMP_THREAD_LIMIT");
        let tess = tess.map_err(|e| format!("OCR is not available: Tesseract 5 is not installed ({e})"))?;
        let lept = open_first(&LEPTONICA_LIBS).map_err(|e| format!("OCR is not available: leptonica is not installed ({e})"))?;
        let bad = |e: String| format!("OCR is not available: an unexpected libtesseract ({e})");
        let calls = Calls {
            create: sym(&tess, "TessBaseAPICreate").map_err(bad)?,
            init3: sym(&tess, "TessBaseAPIInit3").map_err(bad)?,
            set_image2: sym(&tess, "TessBaseAPISetImage2").map_err(bad)?,
            set_resolution: sym(&tess, "TessBaseAPISetSourceResolution").map_err(bad)?,
            recognize: sym(&tess, "TessBaseAPIRecognize").map_err(bad)?,
            utf8_text: sym(&tess, "TessBaseAPIGetUTF8Text").map_err(bad)?,
            delete_text: sym(&tess, "TessDeleteText").map_err(bad)?,
            end: sym(&tess, "TessBaseAPIEnd").map_err(bad)?,
            delete: sym(&tess, "TessBaseAPIDelete").map_err(bad)?,
            pix_read_mem: sym(&lept, "pixReadMem").map_err(bad)?,
            pix_destroy: sym(&lept, "pixDestroy").map_err(bad)?,
        };
        let lang_c = CString::new(langs.clone()).map_err(|e| e.to_string())?;
        // SAFETY: create has no arguments; init3 gets the new handle, NULL (the default data
        // directory) and a NUL-terminated language list.
        let api = unsafe { (calls.create)() };
        if api.is_null() {
            return Err("OCR is not available: Tesseract could not be created".into());
        }
        let status = unsafe { (calls.init3)(api, std::ptr::null(), lang_c.as_ptr()) };
        let engine = OcrEngine {
            calls,
            api,
            languages: langs,
            budget,
            spent: Cell::new(Duration::ZERO),
            _libs: (tess, lept),
        };
        if status != 0 {
            return Err(format!(
                "OCR is not available: Tesseract has no data for {:?} (install tesseract-ocr-<lang>)",
                engine.languages
            ));
        }
        Ok(engine)
    }

    /// The languages, as Tesseract takes them (`eng+deu`).
    pub fn languages(&self) -> &str {
        &self.languages
    }

    /// The OCR time budget for one document.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// True once the budget is spent.
    pub(super) fn out_of_time(&self) -> bool {
        self.spent.get() >= self.budget
    }

    /// Text of a rendered gray page at `dpi`. The page goes to leptonica as an in-memory PGM
    /// (Tesseract's raw-buffer `SetImage` returned no text for PDFium's 8-bit gray bitmaps).
    pub(super) fn recognize_gray(&self, img: &GrayImage, dpi: u32) -> Result<String, String> {
        let (w, h, bpl) = (img.width as usize, img.height as usize, img.bytes_per_line as usize);
        if bpl < w || img.data.len() < bpl * h {
            return Err("the rendered page has an unexpected layout".into());
        }
        let header = format!("P5\n{w} {h}\n255\n");
        let mut pgm = Vec::with_capacity(header.len() + w * h);
        pgm.extend_from_slice(header.as_bytes());
        for row in img.data.chunks(bpl).take(h) {
            pgm.extend_from_slice(&row[..w]);
        }
        self.recognize_encoded_at(&pgm, Some(dpi))
    }

    /// Text of an encoded image (PNG, JPEG, TIFF...; the first frame of a multi-page TIFF).
    pub(super) fn recognize_encoded(&self, bytes: &[u8]) -> Result<String, String> {
        self.recognize_encoded_at(bytes, None)
    }

    fn recognize_encoded_at(&self, bytes: &[u8], dpi: Option<u32>) -> Result<String, String> {
        // SAFETY: leptonica reads `len` bytes from the pointer; a NULL result is an error.
        let mut pix = unsafe { (self.calls.pix_read_mem)(bytes.as_ptr(), bytes.len()) };
        if pix.is_null() {
            return Err("leptonica could not decode the image".into());
        }
        // SAFETY: SetImage2 copies what it needs from the Pix; the Pix is destroyed after the
        // recognition, once.
        unsafe { (self.calls.set_image2)(self.api, pix) };
        if let Some(dpi) = dpi {
            // SAFETY: an image is set; the resolution only tunes the layout analysis.
            unsafe { (self.calls.set_resolution)(self.api, to_int(dpi)?) };
        }
        let text = self.read();
        unsafe { (self.calls.pix_destroy)(&mut pix) };
        text
    }

    /// Recognize the image set last and return its text.
    fn read(&self) -> Result<String, String> {
        let started = Instant::now();
        // SAFETY: the handle is initialized and an image is set; the text is copied and then
        // freed with TessDeleteText, as capi.h requires.
        let result = unsafe {
            if (self.calls.recognize)(self.api, std::ptr::null_mut()) != 0 {
                Err("Tesseract could not recognize the image".to_owned())
            } else {
                let p = (self.calls.utf8_text)(self.api);
                if p.is_null() {
                    Err("Tesseract returned no text".to_owned())
                } else {
                    let text = CStr::from_ptr(p).to_string_lossy().into_owned();
                    (self.calls.delete_text)(p);
                    Ok(text)
                }
            }
        };
        self.spent.set(self.spent.get() + started.elapsed());
        result
    }
}

fn to_int(v: u32) -> Result<c_int, String> {
    c_int::try_from(v).map_err(|_| format!("{v} is out of range"))
}

impl Drop for OcrEngine {
    fn drop(&mut self) {
        // SAFETY: the handle came from TessBaseAPICreate and is ended and deleted once.
        unsafe {
            (self.calls.end)(self.api);
            (self.calls.delete)(self.api);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn bad_language_lists_are_refused() {
        let err = OcrEngine::init(&["eng; rm".into()], Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("invalid OCR language list"), "{err}");
    }

    #[test]
    fn missing_language_data_is_a_clear_error() {
        let err = OcrEngine::init(&["xyz".into()], Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("no data for \"xyz\""), "{err}");
    }
}
