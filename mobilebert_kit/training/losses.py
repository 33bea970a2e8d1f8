"""Distillation losses, shared by ``mbk distill`` and compress's recovery training.

Soft targets follow Hinton et al.: KL divergence between temperature-softened student and teacher
distributions, scaled by T² so its gradient keeps the same size as the hard-label loss's when T
changes; ``alpha`` weighs soft against hard (cross-entropy on the labels).
"""

from __future__ import annotations

from mobilebert_kit.batching import TOKEN_KEYS


def soft_hard_loss(logits, teacher_logits, labels, temperature: float, alpha: float):
    """``alpha`` · KL(teacher_T ‖ student_T) · T² + (1 − ``alpha``) · CE(student, labels)."""
    loss = logits.new_zeros(())
    for term in soft_hard_terms(logits, teacher_logits, labels, temperature, alpha).values():
        loss = loss + term
    return loss


def soft_hard_terms(logits, teacher_logits, labels, temperature: float, alpha: float) -> dict:
    """The weighted terms of :func:`soft_hard_loss`: ``{"soft": alpha·KL·T², "hard": (1 − alpha)·CE}``
    (a term whose weight is 0 is left out)."""
    import torch.nn.functional as F

    terms = {}
    if alpha > 0:
        T = temperature
        kl = F.kl_div(
            F.log_softmax(logits / T, -1),
            F.log_softmax(teacher_logits.float() / T, -1),
            reduction="batchmean",
            log_target=True,
        )
        terms["soft"] = alpha * kl * T * T
    if alpha < 1:
        terms["hard"] = (1 - alpha) * F.cross_entropy(logits, labels)
    return terms


def distillation_loss(
    temperature: float,
    alpha: float,
    hidden_weight: float = 0.0,
    attention_weight: float = 0.0,
    attention_store: list | None = None,
    with_terms: bool = False,
):
    """The engine loss ``loss_fn(model, batch, extra)`` of distill and compress's recovery: :func:`soft_hard_loss`
    on the cached ``teacher_logits`` and ``labels``, plus, when their weights are > 0, :func:`hidden_state_loss`
    on the cached, layer-mapped ``teacher_hidden`` (through ``extra["hidden_proj"]`` when the widths differ)
    and :func:`attention_map_loss` on ``attention_store`` rows picked by the batch's ``idx``.

    With ``with_terms`` it returns ``(loss, terms)``: the weighted terms (``soft``, ``hard``, ``hidden``,
    ``attention``), detached, which sum to the loss; the engine logs them per step."""

    import torch

    def loss_fn(model, batch, extra):
        inputs = {k: batch[k] for k in TOKEN_KEYS if k in batch}
        out = model(**inputs, output_hidden_states=hidden_weight > 0, output_attentions=attention_weight > 0)
        terms = soft_hard_terms(
            out.logits.float(), batch.get("teacher_logits"), batch.get("labels"), temperature, alpha
        )
        mask = batch["attention_mask"].float()
        if hidden_weight > 0:
            projections = getattr(extra, "hidden_proj", None)  # in the ModuleDict when widths differ
            terms["hidden"] = hidden_state_loss(
                out.hidden_states, batch["teacher_hidden"], mask, hidden_weight, projections
            )
        if attention_weight > 0:
            rows = [attention_store[i] for i in batch["idx"].tolist()]
            terms["attention"] = attention_map_loss(out.attentions, rows, mask, attention_weight)
        loss = out.logits.new_zeros((), dtype=torch.float32)  # summed in this order, as before terms were kept
        for term in terms.values():
            loss = loss + term
        return (loss, {k: v.detach() for k, v in terms.items()}) if with_terms else loss

    return loss_fn


def hidden_state_loss(student_hidden, teacher_hidden, mask, weight: float, projections=None):
    """``weight`` x TinyBERT's hidden-state MSE, averaged over the mapped layers and the real (unpadded) tokens.

    Args:
        student_hidden: the student's ``hidden_states`` (embeddings first, as transformers returns them).
        teacher_hidden: ``[batch, width, mapped layers, teacher hidden]``: student layer ``j``
            mimics ``teacher_hidden[:, :, j]``.
        mask: ``[batch, width]`` float attention mask.
        projections: one ``Linear(student hidden -> teacher hidden)`` per mapped layer when the
            widths differ, else ``None``.
    """
    teacher_hidden = teacher_hidden.float()
    total = 0.0
    for j in range(teacher_hidden.shape[2]):
        h = student_hidden[j + 1].float()
        if projections is not None:
            h = projections[j](h)
        err = ((h - teacher_hidden[:, :, j]) ** 2).mean(-1)
        total = total + (err * mask).sum() / mask.sum().clamp(min=1)
    return weight * total / teacher_hidden.shape[2]


def attention_map_loss(student_attentions, teacher_rows: list, mask, weight: float):
    """``weight`` x attention-map MSE over real token pairs, averaged over the mapped layers.

    Args:
        student_attentions: the student's ``attentions`` (one ``[batch, heads, W, W]`` per layer).
        teacher_rows: per example, the cached teacher maps ``[mapped layers, heads, n, n]``.
        mask: ``[batch, W]`` float attention mask.

    Different head counts compare head-averaged maps.
    """
    import torch

    width = mask.shape[1]
    teacher = torch.zeros((len(teacher_rows), *teacher_rows[0].shape[:2], width, width), dtype=torch.float32)
    for b, a in enumerate(teacher_rows):
        n = a.shape[-1]
        teacher[b, :, :, :n, :n] = a.float()
    teacher = teacher.to(mask.device)
    pair_mask = (mask[:, :, None] * mask[:, None, :])[:, None]  # [B, 1, W, W]
    total = 0.0
    for j in range(teacher.shape[1]):
        s_att, t_att = student_attentions[j].float(), teacher[:, j]
        if s_att.shape[1] != t_att.shape[1]:  # different head counts: compare head-averaged maps
            s_att, t_att = s_att.mean(1, keepdim=True), t_att.mean(1, keepdim=True)
        total = total + ((s_att - t_att) ** 2 * pair_mask).sum() / (pair_mask.sum() * s_att.shape[1]).clamp(min=1)
    return weight * total / teacher.shape[1]
