"""Hotel guest registration: stays, guests from the ID and MRZ readers, authority reports, retention."""
