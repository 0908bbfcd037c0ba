"""Making data: training pairs synthesised from clean photos (with the noise model of
:mod:`sid_keras.runtime.noise`), and the calibration of a camera's noise from its own frames."""
