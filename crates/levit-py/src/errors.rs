//! Which Python exception each engine error becomes. The message is always the
//! engine's own (`Display`), so Python users read what the CLI prints.

use std::io::ErrorKind;

use levit::preprocess::PreprocessError;
use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyMemoryError, PyOSError, PyPermissionError,
    PyRuntimeError, PyValueError,
};
use pyo3::PyErr;

pyo3::create_exception!(
    levit,
    FormatError,
    PyValueError,
    "A weight file that is damaged, truncated, or not a levit-rs `.lvt` file (a \
     subclass of ValueError). The message names what is wrong and where."
);

/// An OS error as the Python exception of its kind.
fn os_error(kind: ErrorKind, message: String) -> PyErr {
    match kind {
        ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
        ErrorKind::IsADirectory => PyIsADirectoryError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}

/// The Python exception for an engine error: `FileNotFoundError` / `OSError` for
/// files that cannot be read, [`FormatError`] for files that are not a valid model,
/// `ValueError` for arguments and inputs, `MemoryError` when memory runs out.
pub fn to_py(error: levit::Error) -> PyErr {
    use levit::Error as E;
    let message = error.to_string();
    match &error {
        E::Format(levit::FormatError::Io { source, .. }) => os_error(source.kind(), message),
        E::Format(levit::FormatError::NotAFile { .. }) => PyIsADirectoryError::new_err(message),
        E::Format(_)
        | E::Graph(_)
        | E::MissingTensors(_)
        | E::UnexpectedTensors(_)
        | E::TensorShape { .. }
        | E::TensorDtype { .. }
        | E::NonFiniteWeight { .. }
        | E::PlanCheck { .. } => FormatError::new_err(message),
        E::Image(image) => image_error(image, message),
        E::OutOfMemory { .. } => PyMemoryError::new_err(message),
        E::ThreadPool(_) => PyRuntimeError::new_err(message),
        E::Isa(_)
        | E::Precision { .. }
        | E::InputLength { .. }
        | E::OutputLength { .. }
        | E::NonFiniteLogits { .. }
        | E::Threads { .. }
        | E::TooMuchCompute { .. } => PyValueError::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}

/// The Python exception for an image that cannot be read or preprocessed.
pub fn from_preprocess(error: PreprocessError) -> PyErr {
    let message = error.to_string();
    image_error(&error, message)
}

fn image_error(error: &PreprocessError, message: String) -> PyErr {
    match error {
        PreprocessError::Io { source, .. } => os_error(source.kind(), message),
        PreprocessError::NotAFile { .. } => PyOSError::new_err(message),
        PreprocessError::OutOfMemory { .. } | PreprocessError::PixelsOutOfMemory { .. } => {
            PyMemoryError::new_err(message)
        }
        _ => PyValueError::new_err(message),
    }
}
