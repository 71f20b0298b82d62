"""reconciler: GitOps for model packages.

package.yaml (desired state) -> content hashes -> plan -> apply: a Dockerfile
folder, a built image, or a running container serving the model over HTTP,
acting only on what changed.
"""

__version__ = "0.1.0"
