"""Training the ML correction: QM - MM residuals (:mod:`.residuals`), the fit
(:mod:`.trainer`) and the label/train/evaluate steps of the CLI (:mod:`.workflow`)."""
