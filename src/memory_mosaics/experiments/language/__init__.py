"""The paper's language-model evaluations (Section 7, Appendix D): one ``mosaic paper`` sub-command per figure/table."""
