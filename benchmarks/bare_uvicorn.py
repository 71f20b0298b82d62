"""The ceiling for the serving benchmark: uvicorn calling run() directly, with none of the
contract (no liveness during run(), no timeout, no headers, no logs, no error handling).

    python benchmarks/bare_uvicorn.py PORT   (with AML_APP_ROOT and AZUREML_MODEL_DIR set)
"""

import importlib.util
import json
import os
import sys

import uvicorn

spec = importlib.util.spec_from_file_location("score", os.path.join(os.environ["AML_APP_ROOT"], "score.py"))
score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(score)
score.init()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/ready":
        output = b"Ready"
    else:
        output = json.dumps(score.run(body.decode())).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(output)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": output})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
