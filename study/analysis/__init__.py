"""Statistics, ranking, tables, figures and the report: numpy, pandas, scipy and matplotlib only
(no torch, Ray or MLflow), so results can be re-analysed anywhere."""
