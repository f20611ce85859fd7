"""The overview's Python quick sample, as written.

Only its "..." placeholders are filled in, from the environment:
COMBO_API_KEY (the key), COMBO_BASE_URL (the Base URL; default
http://localhost:9380/v1) and COMBO_AGENT_ID (an agent's id).
"""
import os

from combo_sdk import ComboAgent

client = ComboAgent(api_key=os.environ["COMBO_API_KEY"], base_url=os.environ.get("COMBO_BASE_URL", "http://localhost:9380/v1"))

session = client.sessions.create(agent_id=os.environ["COMBO_AGENT_ID"])
response = client.completions.create(
    session_id=session.id,
    question="Review this PR for me",
    stream=False,
)
print(response.answer)
