"""The classic 784-10-10 network in plain NumPy, tracked by nnexp.

Its own forward pass, backward pass and full-batch gradient descent, as the
from-scratch tutorials write them; the lines marked ``# nnexp`` are all the
tracking there is (docs/your-code.md walks through it).

    python examples/numpy_net.py --lr 0.1 --hidden 10 --seed 0
"""

import argparse

import numpy as np

import nnexp  # nnexp
from nnexp.data import load_dataset


def init_params(hidden, rng):
    return {"W1": rng.uniform(-0.5, 0.5, (hidden, 784)), "b1": rng.uniform(-0.5, 0.5, (hidden, 1)),
            "W2": rng.uniform(-0.5, 0.5, (10, hidden)), "b2": rng.uniform(-0.5, 0.5, (10, 1))}


def forward(p, X):
    Z1 = p["W1"] @ X + p["b1"]
    A1 = np.maximum(Z1, 0)                                  # ReLU
    Z2 = p["W2"] @ A1 + p["b2"]
    E = np.exp(Z2 - Z2.max(axis=0))
    return Z1, A1, E / E.sum(axis=0)                        # softmax


def backward(p, X, Y, Z1, A1, A2):
    m = X.shape[1]
    dZ2 = A2 - Y                                            # softmax + cross-entropy
    dZ1 = (p["W2"].T @ dZ2) * (Z1 > 0)
    return {"W2": dZ2 @ A1.T / m, "b2": dZ2.mean(axis=1, keepdims=True),
            "W1": dZ1 @ X.T / m, "b1": dZ1.mean(axis=1, keepdims=True)}


def evaluate(p, X, labels):
    A2 = forward(p, X)[2]
    loss = -np.log(A2[labels, np.arange(len(labels))] + 1e-12).mean()
    return float(loss), float((A2.argmax(axis=0) == labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=None, help="the first N training images only")
    args = parser.parse_args()
    run = nnexp.init(config=vars(args), name="numpy-net", seed=args.seed)  # nnexp

    data = load_dataset("mnist", val_size=5000)              # pixels in [0, 1]
    X = data.x_train[: args.train_size].reshape(-1, 784).T.astype(np.float64)
    labels = data.y_train[: args.train_size]
    Y = np.eye(10)[labels].T                                # one-hot, (10, m)
    X_val, X_test = (d.reshape(-1, 784).T.astype(np.float64) for d in (data.x_val, data.x_test))
    p = init_params(args.hidden, np.random.default_rng(args.seed))
    for i in range(1, args.iterations + 1):
        Z1, A1, A2 = forward(p, X)
        grads = backward(p, X, Y, Z1, A1, A2)
        for k in p:
            p[k] -= args.lr * grads[k]                      # gradient descent
        if i % 10 == 0 or i == args.iterations:
            train_loss, train_acc = evaluate(p, X, labels)
            val_loss, val_acc = evaluate(p, X_val, data.y_val)
            run.log({"train_loss": train_loss, "train_accuracy": train_acc,  # nnexp
                     "val_loss": val_loss, "val_accuracy": val_acc}, step=i)
    run.summary["test_accuracy"] = evaluate(p, X_test, data.y_test)[1]  # nnexp
    run.save_weights(p)  # nnexp
    run.finish()  # nnexp


if __name__ == "__main__":
    main()
