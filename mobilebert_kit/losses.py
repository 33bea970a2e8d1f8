"""Distillation losses, shared by ``mbk distill`` and compress's recovery training.

Soft targets follow Hinton et al.: KL divergence between temperature-softened student and teacher
distributions, scaled by T² so its gradient keeps the same size as the hard-label loss's when T
changes; ``alpha`` weighs soft against hard (cross-entropy on the labels).
"""

from __future__ import annotations

from mobilebert_kit.batching import TOKEN_KEYS


def soft_hard_loss(logits, teacher_logits, labels, temperature: float, alpha: float):
    """``alpha`` · KL(teacher_T ‖ student_T) · T² + (1 − ``alpha``) · CE(student, labels)."""
    import torch.nn.functional as F

    loss = logits.new_zeros(())
    if alpha > 0:
        T = temperature
        kl = F.kl_div(
            F.log_softmax(logits / T, -1),
            F.log_softmax(teacher_logits.float() / T, -1),
            reduction="batchmean",
            log_target=True,
        )
        loss = loss + alpha * kl * T * T
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(logits, labels)
    return loss


def logit_distillation_loss(temperature: float, alpha: float):
    """An engine loss ``loss_fn(model, batch, extra)`` on cached ``teacher_logits`` and ``labels``."""

    def loss_fn(model, batch, extra):
        inputs = {k: batch[k] for k in TOKEN_KEYS if k in batch}
        logits = model(**inputs).logits.float()
        return soft_hard_loss(logits, batch["teacher_logits"], batch.get("labels"), temperature, alpha)

    return loss_fn
