# The seed's example client: two rows of 10 features, two predictions back.
import json
import sys

import requests

# URL for the web service.
scoring_uri = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:6789/score"

# Two sets of data to score, so we get two results back.
data = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
# Convert to JSON string.
input_data = json.dumps(data)

# Set the content type.
headers = {"Content-Type": "application/json"}

# Make the request and display the response.
resp = requests.post(scoring_uri, input_data, headers=headers)
print(resp.text)
