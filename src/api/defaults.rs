//! The defaults the API server would apply to a Pod.
