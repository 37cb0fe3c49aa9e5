"""The training recipe's measured defaults, in one light module that the CLI can import at start-up
(without torch) and the trainers share. Each figure is from BENCHMARKS.md (QQP dev, BiMPM split)."""

TEACHER_EPOCHS = 3  #: cross-encoder passes over the labelled pairs (3 beat 1; 5: a better teacher, no better student)
DISTIL_WEIGHT = 10.0  #: weight of the similarity distillation term (10 beat 1 for the LSTM)
MARGIN_MSE_WEIGHT = 0.0  #: weight of the margin-MSE term on the teacher's scores (1 cost 0.7 accuracy points: off)
COSENT_WEIGHT = 0.0  #: weight of the CoSENT term over each batch's labelled pairs (not yet measured: off)
