"""The use cases: one function per thing a user asks of servewise, with typed inputs and a typed result.

``cli`` parses flags, calls one flow and renders what it returns; a flow never parses flags or prints.
Flows own the imperative shell around the pure parts: they open runs in the store, start the engine,
read telemetry and write results and notes back.
"""
