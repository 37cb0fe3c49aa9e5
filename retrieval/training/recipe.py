"""The training recipe's measured defaults, in one light module that the CLI can import at start-up
(without torch) and the trainers share. Each figure is from BENCHMARKS.md (QQP dev, BiMPM split)."""

TEACHER_EPOCHS = 3  #: cross-encoder passes over the labelled pairs (3 beat 1; 5: a better teacher, no better student)
TEACHER_LR = 2e-5  #: the cross-encoder teacher's (4e-5: a better teacher, 0.835 vs 0.828, no better student)
DISTIL_WEIGHT = 10.0  #: weight of the similarity distillation term (10 beat 1 for the LSTM)
MARGIN_MSE_WEIGHT = 0.0  #: weight of the margin-MSE term on the teacher's scores (1 cost 0.7 accuracy points: off)
COSENT_WEIGHT = 0.0  #: weight of the CoSENT term over each batch's labelled pairs (1 cost 0.7 AP points: off)
RANKING_WEIGHT = 0.0  #: weight of the in-batch ranking (InfoNCE) term (1: recall@1 +0.4, accuracy -0.3 points: off)
STUDENT_STEPS = 300  #: steps a transformer student of silver pairs is given by default, in 1-3 whole epochs
MINED_NEGATIVES = False  #: negatives mined with the model being trained (recall@1 +0.6, accuracy -0.4 points: off)
TRANSFORMER_LR = 4e-5  #: the transformer's learning rate, with a teacher or without (2e-5 before: rounds 9-10)
LSTM_LR = 2e-3  #: the BiLSTM's learning rate
MAX_STUDENT_EPOCHS = 3  #: MRPC's 92-step epochs: 3 beat 1 (test 0.764 vs 0.755); QQP's 467: 1 (see below)


def student_epochs(steps_per_epoch: int) -> int:
    """The default passes of a transformer student over gold + silver pairs: whole epochs nearest to
    ``STUDENT_STEPS`` steps, 1 to ``MAX_STUDENT_EPOCHS``. A small set (MRPC: 92 steps an epoch) gets
    3 epochs, and gained at each one on dev; a large one (QQP: 467) gets 1, because a second pass
    (+0.6 to +0.9 accuracy and +0.6 AP points on QQP dev, round 12) brings the whole QQP command to
    63 minutes on 2 cores, over its 60."""
    return min(MAX_STUDENT_EPOCHS, max(1, round(STUDENT_STEPS / max(1, steps_per_epoch))))
