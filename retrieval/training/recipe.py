"""The training recipe's measured defaults, in one light module that the CLI can import at start-up
(without torch) and the trainers share. Each figure is from BENCHMARKS.md (QQP dev, BiMPM split)."""

TEACHER_EPOCHS = 2  #: cross-encoder passes over the labelled pairs (2 at 4e-5: as good as 3 at 2e-5, round 13)
TEACHER_LR = 4e-5  #: the cross-encoder teacher's (3 epochs: 0.835 at 4e-5, 0.828 at 2e-5 on QQP dev)
DISTIL_WEIGHT = 10.0  #: weight of the similarity distillation term (10 beat 1 for the LSTM)
STUDENT_DISTIL_WEIGHT = 0.3  #: a transformer student learns the packaged ranking at this (recall@1 +0.6, round 16)
MARGIN_MSE_WEIGHT = 0.0  #: weight of the margin-MSE term on the teacher's scores (1 cost 0.7 accuracy points: off)
COSENT_WEIGHT = 0.0  #: weight of the CoSENT term over each batch's labelled pairs (1 cost 0.7 AP points: off)
RANKING_WEIGHT = 0.0  #: weight of the in-batch ranking (InfoNCE) term (1: recall@1 +0.4, accuracy -0.3 points: off)
STUDENT_RANKING = 0.5  #: ... but for a transformer student of silver pairs, with a memory (round 15)
STUDENT_RANKING_MEMORY = 1024  #: past candidates the student's ranking term also ranks against (4,096: worse)
STUDENT_STEPS = 1400  #: steps a transformer student of silver pairs is given by default, in 1-3 whole epochs
MINED_NEGATIVES = False  #: negatives mined with the model being trained (recall@1 +0.6, accuracy -0.4 points: off)
TRANSFORMER_LR = 4e-5  #: the transformer's learning rate, with a teacher or without (2e-5 before: rounds 9-10)
LSTM_LR = 2e-3  #: the BiLSTM's learning rate
MAX_STUDENT_EPOCHS = 3  #: MRPC's 92-step epochs: 3 beat 1 (test 0.764 vs 0.755); QQP's 467: 3 (see below)


def student_epochs(steps_per_epoch: int) -> int:
    """The default passes of a transformer student over gold + silver pairs: whole epochs nearest to
    ``STUDENT_STEPS`` steps, 1 to ``MAX_STUDENT_EPOCHS``. MRPC (92 steps an epoch) gets 3; QQP's
    20k-pair sample (467) gets 3: it gains at each (0.8228, 0.8280, 0.8314 on dev with the ranking
    term and its memory; round 15), and the whole command takes 40-49 minutes on 2 cores, 33
    with 2 epochs (round 13)."""
    return min(MAX_STUDENT_EPOCHS, max(1, round(STUDENT_STEPS / max(1, steps_per_epoch))))
