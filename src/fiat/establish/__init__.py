"""Phase 2, establish: measure the runtime environment (RATS Evidence) and appraise it (Attestation Results)."""
