//! Test inputs for imgsign: builders of small real images and generators of hostile ones.
