"""Shared by every one-label-per-example task (text sentiment, image classification, image+text sentiment):
label handling, evaluation step, metrics (accuracy, macro/weighted F1, per-class report, confusion matrix)
and the label + probabilities prediction output."""

from __future__ import annotations

from typing import Any

from mmkit.data import Split
from mmkit.errors import UserError
from mmkit.data.labels import class_label_names, encode_label, infer_label_names, label_values
from mmkit.tasks.base import EvalResult, Task


class ClassificationTask(Task):
    default_metric = "macro_f1"

    def settle_labels(self, splits: dict[str, Split], labels: list[str] | None) -> list[str]:
        """Label names (run's, config's, ClassLabel's or the training split's) and a `labels` id column on
        every split; any row whose label is not in the set is a UserError naming the row."""
        cfg = self.cfg
        column = cfg.data.label_column
        reference = splits.get("train") or next(iter(splits.values()))
        if labels is not None:
            names, origin = labels, "the run's label set"
        elif cfg.data.labels:
            names, origin = list(cfg.data.labels), "from data.labels"
        elif class_label_names(reference, column):
            names, origin = class_label_names(reference, column), f"from the ClassLabel feature of {reference.origin}"
        else:
            names = infer_label_names(label_values(reference, column, "data.label_column"), reference, column)
            origin = f"read from {reference.origin}"
        if len(names) < 2:
            raise UserError(f"{reference.origin}: only one label ({names[0]!r}) found; classification needs at least two")
        for name, split in splits.items():
            ids = [
                encode_label(value, names, lambda i=i: split.where(i), column, origin)
                for i, value in label_values(split, column, "data.label_column")
            ]
            dataset = split.dataset
            if "labels" in dataset.column_names:
                dataset = dataset.remove_columns("labels")
            split.dataset = dataset.add_column("labels", ids)
        return names

    # --- evaluation -------------------------------------------------------------------------------------
    def eval_step(self, model, batch, processor=None) -> dict[str, Any]:
        logits = model(**batch).logits.float()
        return {"pred": logits.argmax(-1), "label": batch["labels"], "prob": logits.softmax(-1)}

    def compute_metrics(self, outputs: dict[str, Any], labels: list[str] | None) -> EvalResult:
        from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

        y_true = outputs["label"].tolist()
        y_pred = outputs["pred"].tolist()
        classes = list(range(len(labels)))
        metrics: dict[str, float] = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0)),
        }
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=classes, zero_division=0
        )
        for i, name in enumerate(labels):
            metrics[f"{name}/precision"] = float(precision[i])
            metrics[f"{name}/recall"] = float(recall[i])
            metrics[f"{name}/f1"] = float(f1[i])
            metrics[f"{name}/support"] = float(support[i])
        matrix = confusion_matrix(y_true, y_pred, labels=classes).tolist()
        return EvalResult(metrics=metrics, details={"confusion_matrix": matrix, "labels": list(labels)})

    def worst_rows(self, outputs: dict[str, Any], labels: list[str] | None, n: int) -> list[dict[str, Any]]:
        """Misclassified rows, lowest probability of the gold label first."""
        import torch

        prob, gold, pred = outputs["prob"], outputs["label"], outputs["pred"]
        p_gold = prob.gather(1, gold[:, None]).squeeze(1)
        wrong = (pred != gold).nonzero().flatten()
        order = wrong[torch.sort(p_gold[wrong], stable=True).indices][:n]
        return [
            {
                "row_index": int(outputs["row_index"][i]), "gold": labels[int(gold[i])], "predicted": labels[int(pred[i])],
                "p_predicted": float(prob[i, pred[i]]), "p_gold": float(p_gold[i]),
            }
            for i in order.tolist()
        ]

    def row_content(self, split: Split, row_index: int) -> dict[str, Any]:
        row = split.dataset[row_index]
        data = self.cfg.data
        return {key: row[column] for key, column in (("text", data.text_column), ("image", data.image_column)) if column in row}

    def format_metrics(self, result: EvalResult) -> str:
        m = result.metrics
        labels = result.details.get("labels", [])
        width = max([len(name) for name in labels] + [9])
        lines = [f"  accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}   weighted-F1 {m['weighted_f1']:.4f}"]
        lines.append(f"  {'class':<{width}}  precision  recall     f1  support")
        for name in labels:
            lines.append(
                f"  {name:<{width}}  {m[f'{name}/precision']:9.4f}  {m[f'{name}/recall']:6.4f} "
                f"{m[f'{name}/f1']:6.4f}  {int(m[f'{name}/support']):7d}"
            )
        return "\n".join(lines)

    # --- prediction -------------------------------------------------------------------------------------
    @staticmethod
    def label_and_probabilities(logits, labels: list[str]) -> dict[str, Any]:
        probs = logits.float().softmax(-1).tolist()
        best = max(range(len(probs)), key=probs.__getitem__)
        return {"label": labels[best], "probabilities": {name: round(p, 6) for name, p in zip(labels, probs)}}

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        ranked = sorted(prediction["probabilities"].items(), key=lambda kv: -kv[1])
        return f"{prediction['label']}  (" + ", ".join(f"{name} {p:.3f}" for name, p in ranked) + ")"
