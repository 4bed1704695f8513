"""The shipped scenarios and the measured data they read (imported as stemflow.scenarios).

A package only so that the wheel carries these files and `stemflow.scenario.load_scenario` can
find a shipped scenario by name (`stemflow sim table1-us-east-asia-east`) after `pip install`.
"""
