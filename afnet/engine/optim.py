"""SGD with the paper's parameter groups.

    group              lr mult                      weight decay
    backbone weights   1                            yes
    BN params, biases  1                            no
    navigation         navigation_lr_mult (10)      weights yes, BN/biases no
    classifier weight  classifier_lr_mult[0] (5*)   yes
    classifier bias    classifier_lr_mult[1] (10*)  no
    (*) when fine-tuning from an ImageNet backbone; 1 otherwise.

Each group starts at ``lr = base_lr * lr_mult``; the LR schedule (a ``LambdaLR``, see
``AFNetModule.configure_optimizers``) multiplies it by the schedule's factor every step.
"""
from __future__ import annotations

import torch
from torch import nn


def parameter_groups(model, *, weight_decay: float, navigation_lr_mult: float,
                     classifier_lr_mult=(1.0, 1.0)) -> list[dict]:
    navigation = {id(p) for p in model.navigation_parameters()}
    fc = model.classifier()
    no_decay = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                for p in m.parameters(recurse=False)}
    no_decay |= {id(p) for name, p in model.named_parameters() if name.endswith(".bias")}
    groups: dict[str, dict] = {}

    def add(name, p, mult, decay):
        g = groups.setdefault(name, {"name": name, "params": [], "lr_mult": float(mult),
                                     "weight_decay": weight_decay if decay else 0.0})
        g["params"].append(p)

    for _name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = id(p) not in no_decay
        if p is fc.weight:
            add("classifier_weight", p, classifier_lr_mult[0], True)
        elif p is fc.bias:
            add("classifier_bias", p, classifier_lr_mult[1], False)
        elif id(p) in navigation:
            add("navigation" if decay else "navigation_no_decay", p, navigation_lr_mult, decay)
        else:
            add("backbone" if decay else "backbone_no_decay", p, 1.0, decay)
    return list(groups.values())


def build_optimizer(model, optim, classifier_lr_mult) -> torch.optim.SGD:
    """SGD over :func:`parameter_groups` with the ``optim`` config's lr, momentum, decay."""
    groups = parameter_groups(model, weight_decay=optim.weight_decay, navigation_lr_mult=optim.navigation_lr_mult,
                              classifier_lr_mult=classifier_lr_mult)
    for g in groups:
        g["lr"] = optim.lr * g["lr_mult"]
    return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
