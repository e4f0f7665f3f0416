"""Members (会员): registration with consent, tiers, the points ledger, benefits and coupons, feedback."""
